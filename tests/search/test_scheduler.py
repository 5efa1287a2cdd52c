"""Schedulers on a synthetic two-objective function: the promotion rule, brackets, and the lifecycle contract.

A small asynchronous driver plays the engine: a few workers, jobs finishing in a seeded random order,
some jobs failing. Every promotion is checked against the rule at the moment it is suggested, from
the driver's own log of results (not from the scheduler's state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from autopeft.errors import ConfigError
from autopeft.search import (
    Decision,
    FullFidelity,
    MultiObjectiveASHA,
    MultiObjectiveHyperband,
    ParetoRanking,
    Scheduler,
    Suggestion,
    SuggestionKind,
)
from autopeft.search.pareto import (
    Direction,
    Objective,
    TieBreak,
    hypervolume,
    rank_for_promotion,
    reference_point,
    to_minimization,
)
from autopeft.search.rungs import bracket_distribution, promotion_quota, rung_levels

SCORE = Objective("score", Direction.MAXIMIZE, reference=0.0)
PARAMS = Objective("params", Direction.MINIMIZE, reference=1.2e6)
TWO = [SCORE, PARAMS]
MAX_F = 27


def synthetic(config: Mapping[str, Any], fidelity: int, max_fidelity: int = MAX_F) -> dict[str, float]:
    """Score grows with capacity x and peaks at y = 0.6; parameters grow with x: a real trade-off."""
    x, y = config["x"], config["y"]
    quality = (1.0 - (y - 0.6) ** 2) * (0.3 + 0.7 * math.sqrt(x))
    curve = 1.0 - 0.5 * math.exp(-4.0 * fidelity / max_fidelity)
    noise = 0.01 * math.sin(1e3 * x + 7.0 * fidelity)  # low fidelities rank slightly differently
    return {"score": quality * curve + noise, "params": 1e6 * (0.05 + x)}


def random_configs(seed: int) -> Callable[[int], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    return lambda n: [{"x": float(rng.random()), "y": float(rng.random())} for _ in range(n)]


@dataclass
class Log:
    """What the driver saw: suggestions, results per (bracket, fidelity) in order of arrival, failures."""

    suggestions: list[Suggestion] = field(default_factory=list)
    configs: dict[int, dict[str, Any]] = field(default_factory=dict)
    brackets: dict[int, int] = field(default_factory=dict)
    rungs: dict[tuple[int, int], dict[int, dict[str, float]]] = field(default_factory=dict)
    last: dict[int, Decision] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    promoted: set[tuple[int, int]] = field(default_factory=set)  # (trial, from fidelity)
    checked_promotions: int = 0

    def at(self, fidelity: int) -> list[dict[str, float]]:
        return [r for (_, f), table in self.rungs.items() if f == fidelity for r in table.values()]


def check_promotion(
    log: Log, s: Suggestion, objectives: Sequence[Objective], eta: float, tie_break: TieBreak | str
) -> None:
    """The promoted trial is paused, not failed, and in the top floor(n/eta) of its rung right now."""
    assert s.resume_from is not None and s.fidelity > s.resume_from
    tid = s.trial_id
    assert tid not in log.failed
    assert log.last[tid] is Decision.PAUSE
    assert (tid, s.resume_from) not in log.promoted
    log.promoted.add((tid, s.resume_from))
    table = log.rungs[(log.brackets[tid], s.resume_from)]
    ids = list(table)
    raw = [[table[t][o.name] for o in objectives] for t in ids]
    pts = to_minimization(raw, [o.direction for o in objectives])
    k = promotion_quota(len(ids), eta)
    top = rank_for_promotion(pts, k, tie_break, reference=reference_point(objectives))
    assert ids.index(tid) in set(top.tolist()), f"trial {tid} promoted from {s.resume_from} outside the top {k}"
    log.checked_promotions += 1


def drive(
    scheduler: Scheduler,
    *,
    max_fidelity: int,
    objectives: Sequence[Objective] = TWO,
    workers: int = 4,
    seed: int = 0,
    fail_prob: float = 0.0,
    eta: float = 3,
    tie_break: TieBreak | str = TieBreak.CROWDING,
    midpoints: bool = True,
) -> Log:
    """Run the scheduler to the end, as the engine would, checking each decision and promotion."""
    rng = np.random.default_rng(seed)
    log = Log()
    running: list[Suggestion] = []
    while True:
        while len(running) < workers:
            s = scheduler.suggest()
            if s is None:
                break
            assert s.fidelity <= max_fidelity
            log.suggestions.append(s)
            if s.kind is SuggestionKind.START:
                assert s.trial_id not in log.configs and s.resume_from is None
                log.configs[s.trial_id] = dict(s.config)
                log.brackets[s.trial_id] = s.bracket
            else:
                check_promotion(log, s, objectives, eta, tie_break)
                assert dict(s.config) == log.configs[s.trial_id]
            running.append(s)
        if not running:
            return log
        job = running.pop(int(rng.integers(len(running))))
        tid = job.trial_id
        if rng.random() < fail_prob:
            scheduler.on_trial_error(tid)
            log.failed.add(tid)
            continue
        start = job.resume_from or 0
        mid = (start + job.fidelity) // 2
        if midpoints and start < mid < job.fidelity and mid not in rung_levels(1, max_fidelity, eta):
            assert scheduler.on_trial_result(tid, mid, synthetic(job.config, mid, max_fidelity)) is Decision.CONTINUE
        values = synthetic(job.config, job.fidelity, max_fidelity)
        decision = scheduler.on_trial_result(tid, job.fidelity, values)
        assert decision is (Decision.STOP if job.fidelity == max_fidelity else Decision.PAUSE)
        log.last[tid] = decision
        log.rungs.setdefault((log.brackets[tid], job.fidelity), {})[tid] = {o.name: values[o.name] for o in objectives}


Propose = Callable[[int], Sequence[dict[str, Any]]]


def asha(seed: int = 0, propose: Propose | None = None, **kw: Any) -> MultiObjectiveASHA:
    args: dict[str, Any] = {"objectives": TWO, "min_fidelity": 1, "max_fidelity": MAX_F, "eta": 3, "max_trials": 60}
    args.update(kw)
    return MultiObjectiveASHA(propose=propose or random_configs(seed), **args)


def hyperband(seed: int = 0, propose: Propose | None = None, **kw: Any) -> MultiObjectiveHyperband:
    args: dict[str, Any] = {"objectives": TWO, "min_fidelity": 1, "max_fidelity": MAX_F, "eta": 3, "max_trials": 60}
    args.update(kw)
    return MultiObjectiveHyperband(propose=propose or random_configs(seed), seed=seed, **args)


def full(seed: int = 0, propose: Propose | None = None, **kw: Any) -> FullFidelity:
    return FullFidelity(propose=propose or random_configs(seed), objectives=TWO, max_fidelity=MAX_F, max_trials=60)


FACTORIES: dict[str, Callable[..., Scheduler]] = {
    "asha": asha,
    "asha-single": lambda seed, propose=None: asha(seed, propose, objectives=[SCORE]),
    "asha-hv-eta2": lambda seed, propose=None: asha(seed, propose, eta=2, tie_break="hypervolume"),
    "hyperband": hyperband,
    "hyperband-round-robin": lambda seed, propose=None: hyperband(seed, propose, bracket_assignment="round_robin"),
    "full-fidelity": full,
}
RULE = {"asha-single": ([SCORE], 3, "crowding"), "asha-hv-eta2": (TWO, 2, "hypervolume")}


# --- the contract every scheduler keeps -------------------------------------------------------------


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("fail_prob", [0.0, 0.15])
def test_contract_full_lifecycle(name: str, fail_prob: float) -> None:
    objectives, eta, tie = RULE.get(name, (TWO, 3, "crowding"))
    scheduler = FACTORIES[name](0)
    log = drive(scheduler, max_fidelity=MAX_F, objectives=objectives, eta=eta, tie_break=tie, fail_prob=fail_prob)
    starts = [s for s in log.suggestions if s.kind is SuggestionKind.START]
    assert [s.trial_id for s in starts] == list(range(60))  # the budget is used exactly, ids in order
    assert any(f == MAX_F for (_, f) in log.rungs)  # something finished
    assert scheduler.suggest() is None  # and stays finished
    finished = {t for (_, f), table in log.rungs.items() if f == MAX_F for t in table}
    for tid in finished:  # nothing reports to a trial after it stopped
        with pytest.raises(ValueError, match="not running"):
            scheduler.on_trial_result(tid, MAX_F, synthetic(log.configs[tid], MAX_F))
    with pytest.raises(KeyError):
        scheduler.on_trial_result(10_000, 1, {"score": 0.5, "params": 1.0})
    with pytest.raises(KeyError):
        scheduler.on_trial_error(10_000)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_contract_deterministic_with_a_seed(name: str) -> None:
    objectives, eta, tie = RULE.get(name, (TWO, 3, "crowding"))
    runs = [drive(FACTORIES[name](7), max_fidelity=MAX_F, objectives=objectives, eta=eta, tie_break=tie, seed=3,
                  fail_prob=0.1).suggestions for _ in range(2)]  # fmt: skip
    assert runs[0] == runs[1]


@pytest.mark.parametrize("cls", [MultiObjectiveASHA, MultiObjectiveHyperband, FullFidelity])
def test_contract_keyword_only(cls: type[Scheduler]) -> None:
    with pytest.raises(TypeError):
        cls(random_configs(0), TWO, 1, 9)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_contract_exhausted_source_ends_the_study(name: str) -> None:
    configs = [{"x": 0.1 * i, "y": 0.5} for i in range(1, 6)]
    scheduler = FACTORIES[name](0, lambda n: [configs.pop()] if configs else [])
    objectives, eta, tie = RULE.get(name, (TWO, 3, "crowding"))
    log = drive(scheduler, max_fidelity=MAX_F, objectives=objectives, eta=eta, tie_break=tie, midpoints=False)
    assert sum(s.kind is SuggestionKind.START for s in log.suggestions) == 5


# --- MO-ASHA: the promotion rule --------------------------------------------------------------------


@pytest.mark.parametrize("tie_break", ["crowding", "hypervolume"])
@pytest.mark.parametrize("eta", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asha_promotions_follow_the_rule(tie_break: str, eta: int, seed: int) -> None:
    scheduler = asha(seed, eta=eta, tie_break=tie_break, max_trials=80)
    log = drive(scheduler, max_fidelity=MAX_F, eta=eta, tie_break=tie_break, seed=seed, fail_prob=0.1, workers=5)
    assert log.checked_promotions > 10
    levels = rung_levels(1, MAX_F, eta)
    for s in log.suggestions:
        assert s.fidelity in levels and s.bracket == 0
        if s.kind is SuggestionKind.START:
            assert s.fidelity == 1
        else:
            assert s.resume_from is not None
            assert levels.index(s.fidelity) == levels.index(s.resume_from) + 1  # one rung at a time
    # no rung ever promoted more than its final quota
    for (_, f), table in log.rungs.items():
        if f == MAX_F:
            continue
        moved = sum((t, f) in log.promoted for t in table)
        assert moved <= promotion_quota(len(table), eta)


def test_failed_trials_are_never_promoted() -> None:
    # check_promotion asserts, at each promotion, that the trial has not failed before; here failures are many
    log = drive(asha(0, max_trials=90), max_fidelity=MAX_F, fail_prob=0.3)
    assert len(log.failed) > 10 and log.checked_promotions > 5
    assert not {t for (t, _) in log.promoted} & {t for t in log.failed if t not in log.last}


def test_nan_objective_counts_as_failure() -> None:
    configs = [{"x": 0.9, "y": 0.6}, {"x": 0.5, "y": 0.6}, {"x": 0.1, "y": 0.6}]
    scheduler = MultiObjectiveASHA(
        propose=lambda n: [configs.pop(0)], objectives=[SCORE], min_fidelity=1, max_fidelity=9, eta=3, max_trials=3
    )
    ids = [s.trial_id for s in iter(scheduler.suggest, None)]
    assert len(ids) == 3
    assert scheduler.on_trial_result(ids[0], 1, {"score": float("nan")}) is Decision.STOP  # the best config diverged
    assert scheduler.on_trial_result(ids[1], 1, {"score": 0.5}) is Decision.PAUSE
    assert scheduler.on_trial_result(ids[2], 1, {"score": 0.2}) is Decision.PAUSE
    assert scheduler.suggest() is None  # 2 results at rung 0, quota 0: nothing to promote, budget spent


def test_missing_objective_is_an_error() -> None:
    scheduler = asha(0)
    s = scheduler.suggest()
    assert s is not None
    with pytest.raises(ValueError, match="lacks objectives"):
        scheduler.on_trial_result(s.trial_id, 1, {"score": 1.0})


def _rung0(scheduler: MultiObjectiveASHA, results: list[dict[str, float]]) -> list[int]:
    """Start one trial per result, then report them all at rung 0 (so no promotion happens in between)."""
    ids = []
    for _ in results:
        s = scheduler.suggest()
        assert s is not None and s.kind is SuggestionKind.START
        ids.append(s.trial_id)
    for tid, r in zip(ids, results, strict=True):
        assert scheduler.on_trial_result(tid, 1, r) is Decision.PAUSE
    return ids


def test_dominated_trial_is_not_promoted_over_a_non_dominated_one() -> None:
    scheduler = asha(0, eta=2, max_trials=4)
    ids = _rung0(
        scheduler,
        [
            {"score": 0.4, "params": 2e5},  # 0: dominated by 1 and 3
            {"score": 0.9, "params": 1e5},  # 1: non-dominated
            {"score": 0.3, "params": 3e5},  # 2: dominated by everything
            {"score": 0.5, "params": 5e4},  # 3: non-dominated (fewer parameters than 1)
        ],
    )
    assert ids == [0, 1, 2, 3]
    promoted = []
    while (s := scheduler.suggest()) is not None:
        assert s.kind is SuggestionKind.RESUME and s.fidelity == 2 and s.resume_from == 1
        promoted.append(s.trial_id)
    assert sorted(promoted) == [1, 3]  # quota 4 / 2 = 2: the front, not trial 0 (better score than 3)


def test_crowding_cuts_a_front_that_does_not_fit() -> None:
    scheduler = asha(0, eta=3, max_trials=6)
    front = [{"score": 0.1 * i, "params": 1e5 * i} for i in range(1, 7)]  # one front of six, quota 2
    _rung0(scheduler, front)
    promoted = {s.trial_id for s in iter(scheduler.suggest, None)}
    assert promoted == {0, 5}  # the two extremes keep the spread


def test_single_objective_reduces_to_asha_top_by_value() -> None:
    for direction, best in [(Direction.MAXIMIZE, max), (Direction.MINIMIZE, min)]:
        obj = Objective("loss", direction, reference=0.0 if direction is Direction.MAXIMIZE else 10.0)
        values = [0.3, 0.9, 0.1, 0.7, 0.5, 0.8, 0.2, 0.6, 0.4]
        scheduler = MultiObjectiveASHA(
            propose=random_configs(0), objectives=[obj], min_fidelity=1, max_fidelity=9, eta=3, max_trials=9
        )
        ids = _rung0(scheduler, [{"loss": v} for v in values])
        promoted = [s.trial_id for s in iter(scheduler.suggest, None)]
        ordered = sorted(ids, key=lambda t: values[t], reverse=best is max)
        assert promoted == ordered[:3]  # top 9 / 3 by value, best first


def test_single_objective_ranking_is_sorting() -> None:
    rng = np.random.default_rng(0)
    for direction in Direction:
        ranking = ParetoRanking([Objective("v", direction, reference=0.0)])
        results = [{"v": float(v)} for v in rng.normal(size=20)]
        expected = sorted(range(20), key=lambda i: results[i]["v"], reverse=direction is Direction.MAXIMIZE)
        assert ranking.top(5, results) == expected[:5]
        assert ranking.top(0, results) == [] and ranking.top(5, []) == []


def test_ranking_is_a_strategy_object() -> None:
    class ByParams:
        def top(self, k: int, results: Sequence[Mapping[str, float]]) -> list[int]:
            return sorted(range(len(results)), key=lambda i: results[i]["params"])[:k]

    scheduler = asha(0, ranking=ByParams(), max_trials=3)
    _rung0(scheduler, [{"score": 0.9, "params": 3.0}, {"score": 0.1, "params": 1.0}, {"score": 0.5, "params": 2.0}])
    assert [s.trial_id for s in iter(scheduler.suggest, None)] == [1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asha_improves_hypervolume_over_the_first_batch(seed: int) -> None:
    # 150 trials at fidelity 1 cost about as much as 30 full trainings; 16 of them reach the maximum 9
    log = drive(asha(seed, max_fidelity=9, max_trials=150), max_fidelity=9, workers=6, seed=seed)
    ref = reference_point(TWO)
    first = [synthetic(log.configs[t], 9, 9) for t in range(6)]  # the first batch, trained to the end
    final = log.at(9)

    def hv(results: list[dict[str, float]]) -> float:
        return hypervolume(to_minimization([[r["score"], r["params"]] for r in results], ["maximize", "minimize"]), ref)

    assert len(final) >= 10
    assert hv(final) > 1.1 * hv(first)


# --- Hyperband brackets and full fidelity ---------------------------------------------------------


def test_hyperband_round_robin_brackets() -> None:
    scheduler = hyperband(0, bracket_assignment="round_robin", max_trials=12)
    starts = [s for s in iter(scheduler.suggest, None)]
    levels = rung_levels(1, MAX_F, 3)  # [1, 3, 9, 27]: 4 brackets
    assert [s.bracket for s in starts] == [0, 1, 2, 3] * 3
    assert [s.fidelity for s in starts] == [levels[s.bracket] for s in starts]
    assert all(s.rung == s.bracket for s in starts)


def test_hyperband_distribution_and_seed() -> None:
    def brackets(seed: int) -> list[int]:
        return [s.bracket for s in iter(hyperband(seed, max_trials=2000).suggest, None)]

    b = brackets(1)
    freq = np.bincount(b, minlength=4) / len(b)
    assert freq == pytest.approx(bracket_distribution(4, 3), abs=0.04)
    assert brackets(1) == b and brackets(2) != b


def test_hyperband_promotes_within_its_bracket() -> None:
    log = drive(hyperband(3, max_trials=120), max_fidelity=MAX_F, fail_prob=0.1)
    assert log.checked_promotions > 5  # each checked against its own bracket's rung (check_promotion)
    assert {s.bracket for s in log.suggestions} == {0, 1, 2, 3}
    assert all(s.fidelity == MAX_F for s in log.suggestions if s.bracket == 3)


def test_full_fidelity_runs_everything_to_max() -> None:
    scheduler = FullFidelity(propose=random_configs(0), objectives=TWO, max_fidelity=MAX_F, max_trials=10)
    log = drive(scheduler, max_fidelity=MAX_F)
    assert all(s.kind is SuggestionKind.START and s.fidelity == MAX_F for s in log.suggestions)
    assert len(log.at(MAX_F)) == 10


def test_fidelity_beyond_max_is_rejected() -> None:
    for scheduler in (asha(0), FullFidelity(propose=random_configs(0), objectives=TWO, max_fidelity=MAX_F)):
        s = scheduler.suggest()
        assert s is not None
        with pytest.raises(ValueError, match="exceeds the maximum"):
            scheduler.on_trial_result(s.trial_id, MAX_F + 1, {"score": 0.5, "params": 1.0})


@pytest.mark.parametrize(
    "kw",
    [{"eta": 1}, {"min_fidelity": 0}, {"max_trials": 0}, {"objectives": []}, {"objectives": [SCORE, SCORE]},
     {"tie_break": "random"}],
)  # fmt: skip
def test_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        asha(0, **kw)
    with pytest.raises(ConfigError):
        hyperband(0, bracket_assignment="fifo")


def test_a_result_at_chance_is_not_promoted_for_being_small() -> None:
    """The smallest trial is never dominated; at a score no better than the reference (chance) it adds no
    hypervolume, so it ranks after every trial that adds some."""
    ranking = ParetoRanking([Objective("score", Direction.MAXIMIZE, reference=0.509),
                             Objective("trainable_params", Direction.MINIMIZE, reference=1e6)])
    results = [{"score": 0.50, "trainable_params": 10.0},  # the head alone, at chance
               {"score": 0.642, "trainable_params": 5e4},
               {"score": 0.60, "trainable_params": 9e4}]
    assert ranking.top(1, results) == [1]
    assert ranking.top(3, results)[-1] == 0
    at_zero = ParetoRanking([Objective("score", Direction.MAXIMIZE, reference=0.0),
                             Objective("trainable_params", Direction.MINIMIZE, reference=1e6)])
    assert 0 in at_zero.top(2, results)  # measured from 0, the smallest is on the front and goes first



# --- a rung at chance is skipped by new trials ----------------------------------------------------------------

AT_CHANCE = [Objective("score", Direction.MAXIMIZE, reference=0.5), PARAMS]


def _report(scheduler: MultiObjectiveHyperband, s: Suggestion, score: float) -> None:
    scheduler.on_trial_result(s.trial_id, s.fidelity, {"score": score, "params": 1e3 * (s.trial_id + 1)})


def test_a_rung_where_every_score_is_at_chance_gets_no_new_trials() -> None:
    """Round robin starts trials in brackets 0, 1, 2, 3, ...; four results at chance on rung 0 close bracket 0
    (new trials then start in 1, 2, 3 only), and a later result above chance there opens it again."""
    scheduler = hyperband(0, objectives=AT_CHANCE, bracket_assignment="round_robin", max_trials=200)
    started = [scheduler.suggest() for _ in range(16)]
    assert [s.bracket for s in started if s is not None] == [0, 1, 2, 3] * 4
    rung0 = [s for s in started if s is not None and s.bracket == 0]
    for s in rung0[:3]:
        _report(scheduler, s, 0.5)
    assert not scheduler.is_uninformative(0) and scheduler.first_open_bracket() == 0  # 3 results: too few to say
    _report(scheduler, rung0[3], 0.49)
    assert scheduler.is_uninformative(0) and scheduler.first_open_bracket() == 1
    new = [s for s in iter(scheduler.suggest, None)][:30]
    assert [s.bracket for s in new if s.kind is SuggestionKind.START] and all(
        s.bracket >= 1 for s in new if s.kind is SuggestionKind.START)
    # A bracket-1 trial at chance too: rung 1 closes, so new trials start in brackets 2 and 3.
    ones = [s for s in started if s is not None and s.bracket == 1]
    for s in ones:
        _report(scheduler, s, 0.5)
    assert scheduler.first_open_bracket() == 2
    # Rung 2 at chance as well: the top bracket (full fidelity) is never closed.
    twos = [s for s in started if s is not None and s.bracket == 2]
    for s in twos:
        _report(scheduler, s, 0.5)
    assert scheduler.is_uninformative(2) and scheduler.first_open_bracket() == 3


def test_a_result_above_chance_reopens_the_rung_and_none_turns_it_off() -> None:
    scheduler = hyperband(0, objectives=AT_CHANCE, bracket_assignment="round_robin", max_trials=200)
    started = [s for s in (scheduler.suggest() for _ in range(20)) if s is not None and s.bracket == 0]
    for s in started[:4]:
        _report(scheduler, s, 0.5)
    assert scheduler.first_open_bracket() == 1
    _report(scheduler, started[4], 0.61)
    assert scheduler.first_open_bracket() == 0
    off = hyperband(0, objectives=AT_CHANCE, bracket_assignment="round_robin", max_trials=200,
                    uninformative_after=None)
    for s in [s for s in (off.suggest() for _ in range(20)) if s is not None and s.bracket == 0]:
        _report(off, s, 0.5)
    assert off.first_open_bracket() == 0 and not off.is_uninformative(0)
    with pytest.raises(ConfigError, match="uninformative_after"):
        hyperband(0, uninformative_after=0)


def test_closing_a_rung_keeps_the_weights_of_the_open_brackets() -> None:
    """Drawn brackets: with rung 0 closed, brackets 1-3 in Hyperband's proportions, renormalised."""
    scheduler = hyperband(5, objectives=AT_CHANCE, max_trials=3000)
    zero = []
    while len(zero) < 4:
        s = scheduler.suggest()
        assert s is not None
        if s.bracket == 0:
            zero.append(s)
    for s in zero:
        _report(scheduler, s, 0.5)
    brackets = [s.bracket for s in iter(scheduler.suggest, None) if s.kind is SuggestionKind.START]
    freq = np.bincount(brackets, minlength=4) / len(brackets)
    expected = np.array(bracket_distribution(4, 3))
    expected[0] = 0.0
    assert freq == pytest.approx(expected / expected.sum(), abs=0.04)


def test_the_seeds_start_at_full_fidelity_and_the_others_keep_their_draws() -> None:
    """Configurations named in ``full_fidelity_configs`` start in the top bracket; every other trial gets the
    bracket it gets without them (one draw per new trial either way)."""
    configs = [{"x": i / 40, "y": 0.5} for i in range(40)]
    seeds = [configs[0], configs[7]]

    def make(**kw: Any) -> MultiObjectiveHyperband:
        remaining = list(configs)

        def propose(n: int) -> list[dict[str, Any]]:
            out, remaining[:] = remaining[:n], remaining[n:]
            return out

        return hyperband(3, propose=propose, max_trials=40, **kw)

    plain = [(s.config["x"], s.bracket) for s in iter(make().suggest, None)]
    seeded = [(s.config["x"], s.bracket, s.fidelity) for s in iter(make(full_fidelity_configs=seeds).suggest, None)]
    top = len(rung_levels(1, MAX_F, 3)) - 1
    assert [(x, b) for x, b, _ in seeded if x in (0.0, 7 / 40)] == [(0.0, top), (7 / 40, top)]
    assert all(f == MAX_F for x, _, f in seeded if x in (0.0, 7 / 40))
    assert [(x, b) for x, b, _ in seeded if x not in (0.0, 7 / 40)] == [
        (x, b) for x, b in plain if x not in (0.0, 7 / 40)]
