"""Stores for the dashboard tests, filled by the real study loop on the synthetic objective.

The study's recipe is a real one (the tiny saved BERT on the demo task) and its configurations compile
to real plans, so `autopeft export` and the dashboard's export both work on it; the synthetic runner
reports the objectives, with the trainable share its parameters are of the recipe's base model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from autopeft.engine.definition import StudyDefinition, make_objectives
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.space.config import TrialConfig
from autopeft.store import Store
from tests.conftest import tiny_recipe_dict
from tests.engine.synthetic import MAX_F, synthetic_runner
from tests.engine.test_loop import _loop

BASE = 2_000_000
OBJECTIVES = make_objectives(("score", "trainable_params"), base_params=BASE)


def compile_config(config: dict[str, Any]) -> dict[str, Any]:
    """A real configuration: LoRA on layers 1-2 with a rank that grows with the synthetic capacity x."""
    rank = 1 + int(float(config["x"]) * 15)
    plan = {"1-2": [{"method": "lora", "r": rank, "alpha": 2 * rank, "roles": ["query", "value"]}]}
    return TrialConfig.model_validate({"plan": plan, "learning_rate": 5e-3}).model_dump(mode="json",
                                                                                         exclude_none=True)


class Runner:
    """The synthetic runner, with the share of the base model its parameters are, an optional pause, and
    optionally a third objective (training seconds, growing with the fidelity and the capacity x)."""

    def __init__(self, sleep: float = 0.0, seconds: bool = False) -> None:
        self.sleep, self.seconds = sleep, seconds

    def __call__(self, task: TrialTask) -> TrialOutcome:
        if self.sleep:
            time.sleep(self.sleep)
        outcome = synthetic_runner(task)
        params = outcome.objectives.get("trainable_params") if outcome.objectives else None
        if params is None:
            return outcome
        objectives = dict(outcome.objectives)
        if self.seconds:
            objectives["train_seconds"] = task.fidelity * (1.0 + 3.0 * float(task.config["y"]))
        return dataclasses.replace(outcome, objectives=objectives,
                                   metrics={**outcome.metrics, "trainable_share": params / BASE})


THREE = make_objectives(("score", "trainable_params", "train_seconds"), base_params=BASE)


def definition(model_dir: Path, recipe_dir: Path, seconds: bool = False) -> StudyDefinition:
    return StudyDefinition(space={"name": "synthetic"}, recipe=tiny_recipe_dict(model_dir, fmin=1, fmax=MAX_F),
                           objectives=THREE if seconds else OBJECTIVES, recipe_dir=str(recipe_dir))


def create(store: Store, name: str, model_dir: Path, recipe_dir: Path, strategy: str = "hyperband",
           seconds: bool = False) -> StudyDefinition:
    made = definition(model_dir, recipe_dir, seconds)
    store.create_study(name, space=made.space_json(), recipe=made.recipe_json(),
                       objectives=made.objectives_json(), strategy=strategy, seed=0)
    return made


def fill(url: str, name: str, model_dir: Path, recipe_dir: Path, *, budget: float = 6.0,
         strategy: str = "hyperband", sleep: float = 0.0, created: bool = False, seconds: bool = False) -> None:
    """Run study `name` in the store at `url` to its budget (creating it first unless `created`); `seconds`:
    with training seconds as a third objective (the loop's scheduler still ranks by the first two)."""
    store = Store(url)
    try:
        made = definition(model_dir, recipe_dir, seconds) if created else \
            create(store, name, model_dir, recipe_dir, strategy, seconds)
        _loop(store, name, made, budget=budget, strategy=strategy, runner=Runner(sleep, seconds),
              compile_config=compile_config).run()
    finally:
        store.close()


if __name__ == "__main__":  # a study in a process of its own: URL NAME MODEL_DIR RECIPE_DIR BUDGET SLEEP
    import sys

    url, name, model, folder, budget, pause = sys.argv[1:7]
    fill(url, name, Path(model), Path(folder), budget=float(budget), sleep=float(pause), created=True)
