"""Every strategy by name drives the loop on the synthetic objective; unknown names are one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopeft.engine.definition import StudyDefinition, make_objectives
from autopeft.engine.executors import InProcessExecutor
from autopeft.engine.loop import Budget, StudyLoop
from autopeft.engine.strategy import STRATEGIES, check_strategy, make_sampler_for, make_scheduler
from autopeft.errors import ConfigError
from autopeft.search import FullFidelity, MultiObjectiveHyperband
from autopeft.store import Store, StudyStatus
from tests.engine.synthetic import DIMS, MAX_F, objectives, synthetic_runner

OBJECTIVES = make_objectives(("score", "trainable_params"), base_params=2_000_000)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_each_strategy_runs_a_study(strategy: str, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    definition = StudyDefinition(space={}, recipe={"fidelity": {"min": 1, "max": MAX_F}}, objectives=OBJECTIVES,
                                 recipe_dir=".")
    store.create_study("s", objectives=definition.objectives_json(), recipe=definition.recipe_json(),
                       strategy=strategy)
    known = {"trainable_params": lambda c: objectives(c, MAX_F)["trainable_params"]}
    sampler = make_sampler_for(strategy, DIMS, OBJECTIVES, seed=0, feasible=lambda c: c["x"] < 0.9, known=known)

    def factory(propose: Any) -> Any:
        return make_scheduler(strategy, propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    loop = StudyLoop(store=store, name="s", definition=definition, scheduler_factory=factory, sampler=sampler,
                     executor=InProcessExecutor(), runner=synthetic_runner, compile_config=lambda c: {"plan": {}},
                     budget=Budget(trials=4))
    expected = MultiObjectiveHyperband if STRATEGIES[strategy][1] else FullFidelity
    assert isinstance(loop.scheduler, expected)
    summary = loop.run()
    assert summary.status is StudyStatus.COMPLETE and summary.front.entries
    assert all(t.config["x"] < 0.9 for t in store.trials("s"))  # the constraint holds for every proposal
    assert 4.0 <= summary.budget_used < 5.0


def test_unknown_strategy() -> None:
    with pytest.raises(ConfigError, match="strategy: unknown strategy 'bo'; accepted: mobo-hyperband"):
        check_strategy("bo")
