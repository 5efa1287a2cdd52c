"""The plan of a study (`engine.announce`): the rung ladder, how long proposals stay random, the warnings
when the budget is too small for either, and the estimates checked against what the real loop does."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from autopeft.engine.announce import per_trial, sampler_threshold, study_plan, study_rungs
from autopeft.engine.executors import InProcessExecutor
from autopeft.engine.loop import Budget, StudyLoop
from autopeft.engine.strategy import make_scheduler
from autopeft.errors import ConfigError
from autopeft.search.rungs import rung_levels
from autopeft.search.samplers import MOBOSampler, NSGA2Sampler, TPESampler
from autopeft.store import Store
from tests.engine.synthetic import DIMS, MAX_F, UniformSampler, synthetic_runner
from tests.engine.test_loop import OBJECTIVES, _loop, _study


def test_the_issues_example_has_two_rungs_and_every_proposal_random_at_budget_6() -> None:
    plan = study_plan("mobo-hyperband", 512, 4096, eta=3, budget=6, unit="examples")
    assert plan.rungs == (512, 4096)
    assert plan.lines()[0] == "rungs (eta 3): 512 -> 4,096 examples; new trials start 60% at 512, 40% at 4,096"
    assert plan.model_after == 8 and plan.model_budget == pytest.approx(8 * 0.65 / 0.6)
    assert plan.lines()[1].startswith("proposals: random until 8 results at one fidelity, then BoTorch qLogNEHVI")
    [warning] = plan.warnings
    assert warning.startswith("every proposal will be random: the budget of 6 full trials buys about 9 trials")
    assert "needs 8 results at one fidelity first (a budget of 8.7 or more)" in warning
    assert study_plan("mobo-hyperband", 512, 4096, eta=3, budget=9, unit="examples").warnings == ()


def test_full_fidelity_strategies_have_one_rung_and_need_that_many_trials() -> None:
    plan = study_plan("mobo", 10, 90, budget=8)
    assert plan.rungs == (90,) and plan.lines()[0] == "rungs: 90 steps (every trial trains to full fidelity)"
    assert plan.expected_trials == 8 and plan.model_budget == 8
    assert "needs 8 results first" in plan.warnings[0]  # 8 trials spent: the 9th would be the model's
    assert study_plan("mobo", 10, 90, budget=8.5).warnings == ()
    assert study_plan("tpe", 10, 90, budget=10).warnings[0].startswith("every proposal will be random")
    random = study_plan("random", 10, 90, budget=1)
    assert random.model_after is None and random.warnings == ()
    assert random.lines()[1] == "proposals: scrambled Sobol (random) throughout"


def test_hyperband_rungs_are_the_schedulers() -> None:
    assert study_rungs("hyperband", 10, 90, 3) == (10, 30, 90) == tuple(rung_levels(10, 90, 3))
    assert study_rungs("mobo-hyperband", 1024, 16384, 3) == (1024, 3072, 16384)  # the last step absorbs 9,216
    assert study_rungs("tpe", 10, 90, 3) == (90,)
    assert study_rungs("hyperband", 90, 90, 3) == (90,)


def test_a_single_rung_under_hyperband_is_said() -> None:
    plan = study_plan("hyperband", 10, 20, budget=5)
    assert plan.rungs == (20,)
    assert plan.warnings == ("one rung only: the recipe's fidelity min 10 times eta 3 exceeds its max 20, so "
                             "Hyperband stops no trial early",)


def test_a_budget_too_small_for_the_ladder_is_said() -> None:
    small = study_plan("hyperband", 1024, 16384, budget=5, unit="examples")
    [warning] = small.warnings
    assert warning.startswith("the budget of 5 full trials is small for the ladder: about 7 trials will start at "
                              "1,024 examples, fewer than the 9 it takes for one to be promoted to 16,384")
    assert small.ladder_budget == pytest.approx(6.8, abs=0.05)
    assert study_plan("hyperband", 1024, 16384, budget=7, unit="examples").warnings == ()
    assert study_plan("hyperband", 1024, 16384).warnings == ()  # a time limit only: nothing to compare


def test_thresholds_are_the_samplers_own_defaults() -> None:
    """Read from the samplers, not repeated: a sampler built as a study builds it waits for as many."""
    assert sampler_threshold("mobo") == MOBOSampler(DIMS, OBJECTIVES).min_points == 8
    assert sampler_threshold("tpe") == TPESampler(DIMS, OBJECTIVES).n_startup_trials == 10
    assert sampler_threshold("nsga2") == NSGA2Sampler(DIMS, OBJECTIVES).population_size == 8
    assert sampler_threshold("random") is None


def test_per_trial_cost_and_results() -> None:
    assert per_trial((90,), 3) == (1.0, (1.0,))
    cost, results = per_trial((1, 3, 9), 3)  # brackets drawn 9 : 4.5 : 3 of 16.5
    shares = (9 / 16.5, 4.5 / 16.5, 3 / 16.5)
    assert results == pytest.approx((shares[0], shares[0] / 3 + shares[1], shares[0] / 9 + shares[1] / 3 + shares[2]))
    assert cost == pytest.approx(shares[0] * (1 + 2 / 3 + 6 / 9) / 9 + shares[1] * (3 + 6 / 3) / 9 + shares[2])


@pytest.mark.parametrize(("strategy", "eta", "budget", "field"), [
    ("nope", 3.0, None, "strategy"), ("hyperband", 1.5, None, "eta"), ("mobo", 3.0, -1.0, "budget")])
def test_bad_options_are_config_errors(strategy: str, eta: float, budget: float | None, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        study_plan(strategy, 1, 27, eta=eta, budget=budget)
    assert caught.value.field == field


def test_the_estimates_match_what_the_real_loop_does(tmp_path: Path) -> None:
    """A Hyperband study on the synthetic objective: trials that trained, and results per rung, near the plan's."""
    store = Store(f"sqlite:///{tmp_path}/s.db")
    _loop(store, "hb", _study(store, "hb"), budget=12).run()
    plan = study_plan("hyperband", 1, MAX_F, budget=12)
    trained = [t for t in store.trials("hb") if t.status.value != "failed"]  # a failed trial costs nothing
    assert plan.expected_trials == pytest.approx(len(trained), rel=0.2)
    counts = Counter(r.fidelity for r in store.results("hb"))
    _, per = per_trial(plan.rungs, 3)
    for rung, share in zip(plan.rungs, per, strict=True):
        assert plan.expected_trials * share == pytest.approx(counts[rung], rel=0.35)


def test_seeds_cost_a_full_trial_each_and_count_at_the_top_rung() -> None:
    """Under Hyperband the seeds train straight to full fidelity: the budget buys fewer trials, and the model's
    results at one fidelity come sooner only where the top rung is the one that fills first."""
    plain = study_plan("mobo-hyperband", 512, 4096, eta=3, budget=12)
    seeded = study_plan("mobo-hyperband", 512, 4096, eta=3, budget=12, seeds=4)
    cost, results = per_trial(plain.rungs, 3)
    assert seeded.seeds == 4 and seeded.as_json()["seeds"] == 4
    assert seeded.expected_trials == pytest.approx(4 + 8 / cost)
    top, low = 4 / results[1], 8 / results[0]  # new trials for 4 more top results, or 8 at the lowest rung
    assert seeded.model_budget == pytest.approx(4 + min(top, low) * cost)
    assert seeded.ladder_budget == pytest.approx(4 + plain.ladder_budget)  # seeds do not climb
    full = study_plan("mobo", 10, 90, budget=12, seeds=4)  # a full-fidelity study: seeds are trials like any
    assert full.model_budget == 8 and full.expected_trials == 12
    assert study_plan("mobo", 10, 90, seeds=9).model_budget == 8  # the 8th seed's result starts the model


def test_the_estimates_with_seeds_match_what_the_real_loop_does(tmp_path: Path) -> None:
    """The same check as below with 3 seeds proposed first and trained to full fidelity."""
    from autopeft.search.samplers.seeded import SeededSampler

    store = Store(f"sqlite:///{tmp_path}/s.db")
    definition = _study(store, "hb")
    seeds = [{"x": 0.2, "y": 0.6}, {"x": 0.5, "y": 0.5}, {"x": 0.8, "y": 0.4}]

    def factory(propose: Any) -> Any:
        return make_scheduler("hyperband", propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0,
                              seeds=seeds)

    StudyLoop(store=store, name="hb", definition=definition, scheduler_factory=factory,
              sampler=SeededSampler(UniformSampler(DIMS, OBJECTIVES, seed=1), seeds), executor=InProcessExecutor(),
              runner=synthetic_runner, compile_config=lambda c: {"plan": {}, **c}, budget=Budget(trials=12)).run()
    plan = study_plan("hyperband", 1, MAX_F, budget=12, seeds=len(seeds))
    trained = [t for t in store.trials("hb") if t.status.value != "failed"]
    assert plan.expected_trials == pytest.approx(len(trained), rel=0.2)
    assert Counter(r.fidelity for r in store.results("hb"))[MAX_F] >= len(seeds)
