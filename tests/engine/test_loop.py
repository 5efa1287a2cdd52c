"""The study loop on a synthetic objective with a real store: recording, budget, failures, resume, workers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autopeft.engine.definition import StudyDefinition, make_objectives
from autopeft.engine.executors import InProcessExecutor, LocalPoolExecutor
from autopeft.engine.loop import Budget, StudyLoop
from autopeft.engine.strategy import make_scheduler
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.errors import ConfigError
from autopeft.search.rungs import rung_levels
from autopeft.store import Store, StudyStatus, TrialStatus
from tests.engine.synthetic import DIMS, MAX_F, UniformSampler, synthetic_runner

OBJECTIVES = make_objectives(("score", "trainable_params"), base_params=2_000_000)


def _study(store: Store, name: str, strategy: str = "hyperband") -> StudyDefinition:
    definition = StudyDefinition(space={"name": "synthetic"}, recipe={"fidelity": {"min": 1, "max": MAX_F}},
                                 objectives=OBJECTIVES, recipe_dir=".")
    store.create_study(name, space=definition.space_json(), recipe=definition.recipe_json(),
                       objectives=definition.objectives_json(), strategy=strategy, seed=0)
    return definition


def _loop(store: Store, name: str, definition: StudyDefinition, *, budget: float = 6.0, strategy: str = "hyperband",
          runner: Any = synthetic_runner, executor: Any = None, compile_config: Any = None) -> StudyLoop:
    def factory(propose: Any) -> Any:
        return make_scheduler(strategy, propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    return StudyLoop(store=store, name=name, definition=definition, scheduler_factory=factory,
                     sampler=UniformSampler(DIMS, OBJECTIVES, seed=1), executor=executor or InProcessExecutor(),
                     runner=runner, compile_config=compile_config or (lambda c: {"plan": {}, **c}),
                     budget=Budget(trials=budget))


def test_hyperband_study_records_every_result_and_spends_its_budget(store_url: str) -> None:
    store = Store(store_url)
    definition = _study(store, "s")
    summary = _loop(store, "s", definition).run()

    assert summary.status is StudyStatus.COMPLETE and store.get_study("s").status is StudyStatus.COMPLETE
    levels = rung_levels(1, MAX_F, 3)
    results = store.results("s")
    assert results and {r.fidelity for r in results} <= set(levels)
    # Budget: the training the results account for is what the loop counted, within one trial of the budget.
    reached: dict[int, int] = {}
    for r in results:
        reached[r.trial_number] = max(reached.get(r.trial_number, 0), r.fidelity)
    assert summary.budget_used == pytest.approx(sum(reached.values()) / MAX_F)
    assert 6.0 <= summary.budget_used < 7.0
    trials = store.trials("s")
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.status in (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED) for t in trials)
    assert all(t.bracket is not None for t in trials)
    failed = [t for t in trials if t.status is TrialStatus.FAILED]
    assert all(t.error == "RuntimeError: synthetic failure" and t.config["y"] > 0.9 for t in failed)
    complete = [t for t in trials if t.status is TrialStatus.COMPLETE]
    assert complete and all(any(r.trial_number == t.number and r.fidelity == MAX_F for r in results) for t in complete)
    # The front is stored after every full-fidelity result, and it is what the summary shows.
    snapshot = store.latest_pareto_snapshot("s")
    assert snapshot is not None and set(snapshot.trial_ids) == {e.trial_id for e in summary.front.entries}
    assert snapshot.hypervolume == pytest.approx(summary.front.hypervolume)
    store.close()


def test_failures_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    definition = _study(store, "f", strategy="random")

    def compile_config(config: Mapping[str, Any]) -> dict[str, Any]:
        if config["x"] < 0.2:
            raise ConfigError("rank 0 is not allowed", field="layer_0.rank")
        return {"plan": {}}

    def flaky(task: TrialTask) -> TrialOutcome:
        if task.number % 4 == 1:
            raise RuntimeError("runner crashed")
        return synthetic_runner(task)

    summary = _loop(store, "f", definition, budget=12, strategy="random", runner=flaky,
                    compile_config=compile_config).run()
    trials = store.trials("f")
    errors = {t.number: t.error for t in trials if t.status is TrialStatus.FAILED}
    assert any("rank 0 is not allowed" in (e or "") for e in errors.values())
    assert any("runner crashed" in (e or "") for e in errors.values())
    assert summary.counts["complete"] == 12  # failed jobs cost nothing: the budget is spent on real trials
    assert summary.counts["failed"] == len(errors) >= 2


class Interrupt:
    """Runs normally, then raises KeyboardInterrupt once on the given job (as Ctrl-C would)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, task: TrialTask) -> TrialOutcome:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return synthetic_runner(task)


def test_an_interrupted_study_resumes_from_the_store(store_url: str) -> None:
    store = Store(store_url)
    definition = _study(store, "r")
    paused = _loop(store, "r", definition, runner=Interrupt(at=9)).run()
    assert paused.status is StudyStatus.PAUSED and store.get_study("r").status is StudyStatus.PAUSED
    waiting = store.trials("r", status=TrialStatus.WAITING)
    assert len(waiting) == 1  # the job that was running goes back to waiting

    before = {(r.trial_number, r.fidelity) for r in store.results("r")}
    summary = _loop(store, "r", definition).run(resume=True)
    assert summary.status is StudyStatus.COMPLETE
    after = store.results("r")
    assert before <= {(r.trial_number, r.fidelity) for r in after}
    assert any(r.trial_number == waiting[0].number for r in after)  # the interrupted job ran again
    assert 6.0 <= summary.budget_used < 7.0  # one budget over both runs, not one each
    numbers = [t.number for t in store.trials("r")]
    assert numbers == list(range(len(numbers)))


def test_a_pool_of_worker_processes_runs_trials_in_parallel(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    definition = _study(store, "p", strategy="random")
    from tests.engine.faulty import WithOptions, echo_runner

    # Each trial takes 2 s, so the second worker takes one while the first trains, even if it starts late.
    summary = _loop(store, "p", definition, budget=4, strategy="random", runner=WithOptions(echo_runner, {"sleep": 2}),
                    executor=LocalPoolExecutor(2)).run()
    assert summary.counts["complete"] >= 4
    pids = {r.metrics["pid"] for r in store.results("p")}
    assert len(pids) == 2  # both workers trained


def test_progress_lines_follow_the_study(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from autopeft.engine.progress import LineDisplay

    out = io.StringIO()
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    definition = _study(store, "d", strategy="random")
    loop = _loop(store, "d", definition, budget=3, strategy="random")
    loop.display = LineDisplay(Console(file=out, width=200))
    summary = loop.run()
    lines = out.getvalue().strip().splitlines()
    heads = [line for line in lines if line.startswith("d: ")]  # and the front, as lines, when it changes
    assert len(heads) >= 3 and all(line.startswith(("d: ", "front: ", "  trial ")) for line in lines)
    assert f"{summary.counts['complete']} complete" in heads[-1] and "budget 3.0/3 full trials" in heads[-1]
    assert any(line.startswith("front: ") for line in lines)
