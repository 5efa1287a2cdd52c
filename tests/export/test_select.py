"""Choosing the trial to export (each rule, ties, the closest trial named on no match)."""

from __future__ import annotations

from typing import Any

import pytest

from autopeft.engine.definition import make_objectives
from autopeft.engine.front import Front, FrontEntry, compute_front
from autopeft.export.select import Rule, SelectionError, select, share_pct

BASE = 1_000_000


def entry(number: int, score: float, params: int, *, share: bool = True, lr: float = 1e-3) -> FrontEntry:
    metrics: dict[str, Any] = {"trainable_share": params / BASE} if share else {}
    return FrontEntry(trial_id=100 + number, number=number, config={}, plan={"plan": {}, "learning_rate": lr},
                      objectives={"score": score, "trainable_params": float(params)}, metrics=metrics, fidelity=12)


@pytest.fixture
def front() -> Front:
    # Front: 2 (0.90, 20k), 1 (0.85, 6k), 0 (0.80, 2k); 3 is dominated by 0.
    entries = [entry(0, 0.80, 2_000), entry(1, 0.85, 6_000), entry(2, 0.90, 20_000), entry(3, 0.70, 9_000)]
    return compute_front(make_objectives(["score", "trainable_params"], base_params=BASE), entries)


def test_front_order_and_default_is_best_score(front: Front) -> None:
    assert [e.number for e in front.entries] == [2, 1, 0]
    assert select(front, Rule()).number == 2


@pytest.mark.parametrize(("pct", "expected"), [(1.0, 1), (0.6, 1), (0.5, 0), (0.2, 0), (100, 2)])
def test_max_params_pct_takes_best_score_within_budget(front: Front, pct: float, expected: int) -> None:
    assert select(front, Rule(max_params_pct=pct)).number == expected


@pytest.mark.parametrize(("floor", "expected"), [(0.82, 1), (0.85, 1), (0.5, 0), (0.9, 2)])
def test_min_score_takes_fewest_params_above_floor(front: Front, floor: float, expected: int) -> None:
    assert select(front, Rule(min_score=floor)).number == expected


def test_no_match_names_the_closest(front: Front) -> None:
    with pytest.raises(SelectionError, match=r"share <= 0\.1%; the smallest is trial 0 \(score 0\.8, 2,000 params, "
                                             r"0\.2%\)"):
        select(front, Rule(max_params_pct=0.1), study="study 's'")
    with pytest.raises(SelectionError, match=r"scores >= 0\.95; the best is trial 2 \(score 0\.9, 20,000 params"):
        select(front, Rule(min_score=0.95))


def test_trial_by_number_off_the_front_and_unknown(front: Front) -> None:
    assert select(front, Rule(trial=3)).number == 3  # completed, dominated: still exportable
    with pytest.raises(SelectionError, match=r"has no trial 7 \(no trials\)"):
        select(front, Rule(trial=7))


def test_one_rule_at_most() -> None:
    with pytest.raises(SelectionError, match="at most one"):
        Rule(trial=1, min_score=0.5)


def test_empty_front_says_so() -> None:
    empty = compute_front(make_objectives(["score", "trainable_params"], base_params=BASE), [])
    with pytest.raises(SelectionError, match="no trial has completed at full fidelity yet"):
        select(empty, Rule())


def test_ties_prefer_fewer_params_then_lower_number() -> None:
    objectives = make_objectives(["score", "trainable_params", "train_seconds"], base_params=BASE)
    a, b = entry(0, 0.9, 5_000), entry(1, 0.9, 3_000)
    a = FrontEntry(**{**a.__dict__, "objectives": {**a.objectives, "train_seconds": 1.0}})
    b = FrontEntry(**{**b.__dict__, "objectives": {**b.objectives, "train_seconds": 9.0}})
    front = compute_front(objectives, [a, b])
    assert {e.number for e in front.entries} == {0, 1}
    assert select(front, Rule()).number == 1


def test_share_falls_back_to_the_reference_point(front: Front) -> None:
    bare = entry(5, 0.5, 50_000, share=False)
    assert share_pct(bare, front) == pytest.approx(5.0)
    assert share_pct(bare) is None


def _peft_check(loadable: set[int]) -> Any:
    return lambda e: [] if e.number in loadable else [f"trial {e.number}'s plan mixes LoRA and DoRA"]


@pytest.mark.parametrize(("rule", "loadable", "expected"), [
    (Rule(peft_only=True), {0, 1}, 1),
    (Rule(peft_only=True), {3}, 3),  # off the front: what dominates it is not loadable
    (Rule(peft_only=True, max_params_pct=0.5), {1, 3}, None),
    (Rule(peft_only=True, max_params_pct=1), {0, 1, 3}, 1),
    (Rule(peft_only=True, min_score=0.75), {1, 3}, 1),
    (Rule(peft_only=True, trial=0), {0}, 0),
])
def test_peft_only_picks_among_the_trials_peft_can_load(front: Front, rule: Rule, loadable: set[int],
                                                        expected: int | None) -> None:
    if expected is None:
        with pytest.raises(SelectionError, match=r"that peft can load has a trainable share <= 0\.5%; the smallest "
                                                 r"is trial 1"):
            select(front, rule, peft_check=_peft_check(loadable))
    else:
        assert select(front, rule, peft_check=_peft_check(loadable)).number == expected


def test_peft_only_says_why_when_peft_can_load_none(front: Front) -> None:
    with pytest.raises(SelectionError, match=r"peft can load none of the 4 trials of s completed at full fidelity "
                                             r"\(the best, trial 2: trial 2's plan mixes LoRA and DoRA\); search a "
                                             r"space with the peft_expressible constraint"):
        select(front, Rule(peft_only=True), study="s", peft_check=_peft_check(set()))
    with pytest.raises(SelectionError, match=r"peft cannot load trial 3 of s: trial 3's plan mixes"):
        select(front, Rule(peft_only=True, trial=3), study="s", peft_check=_peft_check({0}))


@pytest.mark.parametrize("rule", [{"max_params_pct": -5}, {"max_params_pct": 0}, {"max_params_pct": 101},
                                  {"max_params_pct": float("nan")}, {"min_score": float("nan")},
                                  {"min_score": float("inf")}])
def test_limits_out_of_range_are_refused(rule: dict[str, float]) -> None:
    from autopeft.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(rule))):
        Rule(**rule)  # type: ignore[arg-type]


def test_a_trial_no_better_than_chance_is_not_on_the_front() -> None:
    entries = [entry(0, 0.50, 100), entry(1, 0.85, 6_000), entry(2, 0.90, 20_000)]
    at_chance = compute_front(make_objectives(["score", "trainable_params"], base_params=BASE, chance=0.51), entries)
    assert [e.number for e in at_chance.entries] == [2, 1]  # the head alone at 0.50 is no trade-off
    assert len(at_chance.completed) == 3
    from_zero = compute_front(make_objectives(["score", "trainable_params"], base_params=BASE), entries)
    assert [e.number for e in from_zero.entries] == [2, 1, 0]


def test_a_front_empty_because_every_trial_is_at_chance_says_so() -> None:
    front = compute_front(make_objectives(["score", "trainable_params"], base_params=BASE, chance=0.6),
                          [entry(0, 0.55, 100), entry(1, 0.6, 200)])
    with pytest.raises(SelectionError, match=r"none of its 2 full-fidelity trial\(s\) scores above chance \(0\.6"):
        select(front, Rule(), study="s")
    assert select(front, Rule(trial=1), study="s").number == 1  # by number, it can still be exported
