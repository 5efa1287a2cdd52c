"""Incremental budgets: a study resumed with a larger budget continues its Hyperband brackets (issue 16).

The real loop, an in-process executor and the synthetic objective, on SQLite and (when reachable)
PostgreSQL, with the shipped `hyperband` strategy: scrambled Sobol proposals and multi-objective
Hyperband with sampled brackets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from autopeft.engine.definition import StudyDefinition
from autopeft.engine.executors import InProcessExecutor
from autopeft.engine.loop import Budget, StudyLoop, StudySummary, budget_spent
from autopeft.engine.strategy import make_sampler_for, make_scheduler
from autopeft.search.rungs import promotion_quota, rung_levels
from autopeft.search.scheduler import ParetoRanking
from autopeft.store import Store, TrialStatus
from tests.engine.synthetic import DIMS, MAX_F, synthetic_runner
from tests.engine.test_loop import OBJECTIVES, _study

LEVELS = rung_levels(1, MAX_F, 3)  # [1, 3, 9, 27]: four rungs, four brackets


def _run(store: Store, name: str, budget: float, *, resume: bool = False, sampler_seed: int = 0) -> StudySummary:
    """One run of the loop, as `study run` / `study resume --budget` make it (seed 0, eta 3)."""
    definition = _study(store, name) if not resume else StudyDefinition.from_record(store.get_study(name))

    def factory(propose: Any) -> Any:
        return make_scheduler("hyperband", propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    sampler = make_sampler_for("hyperband", DIMS, OBJECTIVES, seed=sampler_seed, feasible=None, known=None)
    loop = StudyLoop(store=store, name=name, definition=definition, scheduler_factory=factory, sampler=sampler,
                     executor=InProcessExecutor(), runner=synthetic_runner, compile_config=lambda c: {"plan": {}},
                     budget=Budget(trials=budget))
    return loop.run(resume=resume)


def _record(store: Store, name: str) -> dict[str, Any]:
    """What a study did, comparable across studies: every result, every job, every trial's end."""
    return {
        "results": sorted((r.trial_number, r.fidelity, tuple(sorted(r.objectives.items())))
                          for r in store.results(name)),
        "attempts": [(a.trial_number, a.number, a.fidelity, a.resume_from, a.outcome) for a in store.attempts(name)],
        "trials": [(t.number, t.status, t.bracket, tuple(sorted(t.config.items()))) for t in store.trials(name)],
    }


def _reached(store: Store, name: str) -> dict[int, int]:
    """Each trial's highest fidelity."""
    reached: dict[int, int] = {}
    for r in store.results(name):
        reached[r.trial_number] = max(reached.get(r.trial_number, 0), r.fidelity)
    return reached


def _promotable(store: Store, name: str) -> set[int]:
    """Stopped trials that the promotion rule lets move on now, computed from the store alone.

    Per bracket and rung below the top: the rung's results in order of arrival, its quota
    ``floor(n / eta)``, the quota's members by Pareto rank (`ParetoRanking.top`), and the room left
    (the quota less the trials already promoted from the rung); the best unpromoted members fill it.
    """
    trials = {t.number: t for t in store.trials(name)}
    reached = _reached(store, name)
    ranking = ParetoRanking(OBJECTIVES)
    out: set[int] = set()
    for bracket in range(len(LEVELS)):
        for rung in range(bracket, len(LEVELS) - 1):
            population = [(r.trial_number, r.objectives) for r in sorted(store.results(name), key=lambda r: r.id)
                          if r.fidelity == LEVELS[rung] and trials[r.trial_number].bracket == bracket]
            k = promotion_quota(len(population), 3)
            promoted = {n for n, _ in population if reached[n] > LEVELS[rung]}
            room = k - len(promoted)
            for i in ranking.top(k, [values for _, values in population]):
                number = population[i][0]
                if room > 0 and number not in promoted and trials[number].status is TrialStatus.PRUNED:
                    out.add(number)
                    room -= 1
    return out


def _check_no_restart(store: Store, name: str) -> None:
    """Every job after a trial's first continues from the fidelity the trial had reached (its checkpoint)."""
    done: dict[int, int] = {}
    for a in store.attempts(name):
        if a.trial_number in done:
            assert a.resume_from == done[a.trial_number], a
        else:
            assert a.resume_from is None, a
        done[a.trial_number] = a.fidelity


def test_a_study_extended_from_10_to_20_ends_as_one_run_with_20(store_url: str) -> None:
    """Run with budget 10, then resumed with 20, the study is the study run with 20 at once.

    "As" here is exact, because every draw is reproducible: the Sobol proposals follow the number
    of trials, and the restored scheduler replays its bracket draws. So both studies hold the same
    trials (configuration, bracket, final status), the same results at the same fidelities, and the
    same jobs: the trials that the first run stopped at a rung and the second promotes are resumed
    from their checkpoint's fidelity (``resume_from``), never restarted from zero, and the budget
    spent is the same.
    """
    store = Store(store_url)
    once = _run(store, "once", 20)
    _run(store, "twice", 10)
    reached_at_10 = _reached(store, "twice")
    pruned_at_10 = {t.number for t in store.trials("twice", status=TrialStatus.PRUNED)}
    twice = _run(store, "twice", 20, resume=True)

    assert _record(store, "twice") == _record(store, "once")
    assert twice.budget_used == pytest.approx(once.budget_used)
    assert budget_spent(store.results("twice"), MAX_F) == pytest.approx(once.budget_used)
    assert 20 <= twice.budget_used < 21
    # Not vacuous: trials the first run left pruned moved on in the second, from their checkpoints.
    reached = _reached(store, "twice")
    assert any(reached[n] > reached_at_10[n] for n in pruned_at_10)
    _check_no_restart(store, "twice")
    store.close()


def test_a_larger_budget_promotes_the_stopped_trials_as_the_rule_allows(store_url: str) -> None:
    """With other draws after the resume (another sampler seed), the continuation still follows the rule.

    Measured: trials the first run left pruned are promoted by the second; at the end no rung holds
    a stopped trial that its promotion rule would move on (at most one, made promotable by the very
    last result, after which the budget allowed no new job); no rung promotes more than its quota; no
    trial is restarted from zero; the budget is spent once (20 full trials in all, overshooting by less
    than one); and the number of results at each rung is that of the study run with 20 at once, within
    the spread that other draws give anyway (5 per rung: run with 20 at once, sampler seeds 0, 3 and 7
    gave 37-42, 27-32, 18-20 and 12-13 results at the four rungs; before this change, the run extended
    from 10 with seed 0 gave 27 at the lowest rung, against 38, and promoted none of its pruned trials).
    """
    store = Store(store_url)
    _run(store, "once", 20)
    _run(store, "ext", 10)
    reached_at_10 = _reached(store, "ext")
    pruned = {t.number for t in store.trials("ext", status=TrialStatus.PRUNED)}
    summary = _run(store, "ext", 20, resume=True, sampler_seed=7)

    reached = _reached(store, "ext")
    assert any(reached[n] > reached_at_10[n] for n in pruned)
    assert len(_promotable(store, "ext")) <= 1
    _check_no_restart(store, "ext")
    assert 20 <= summary.budget_used < 21
    assert summary.budget_used == pytest.approx(budget_spent(store.results("ext"), MAX_F))
    trials = {t.number: t for t in store.trials("ext")}
    for bracket in range(len(LEVELS)):
        for rung in range(bracket, len(LEVELS) - 1):
            at_rung = [n for n, f in reached.items() if trials[n].bracket == bracket and f >= LEVELS[rung]]
            moved_on = [n for n in at_rung if reached[n] > LEVELS[rung]]
            assert len(moved_on) <= promotion_quota(len(at_rung), 3), (bracket, rung)
    assert _rung_counts(store, "ext") == pytest.approx(_rung_counts(store, "once"), abs=5)
    assert all(t.status in (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED) for t in trials.values())
    store.close()


def _rung_counts(store: Store, name: str) -> list[int]:
    """How many trials have a result at each rung level."""
    counts: Mapping[int, int] = {f: sum(1 for r in store.results(name) if r.fidelity == f) for f in LEVELS}
    return [counts[f] for f in LEVELS]


def test_the_same_budget_on_resume_changes_nothing(store_url: str) -> None:
    """Resuming a finished study without more budget runs nothing and leaves its stopped trials pruned."""
    store = Store(store_url)
    _run(store, "same", 10)
    before = _record(store, "same")
    summary = _run(store, "same", 10, resume=True)
    assert _record(store, "same") == before
    assert summary.budget_used == pytest.approx(budget_spent(store.results("same"), MAX_F))
    store.close()
