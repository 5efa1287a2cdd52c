"""Every shipped space and recipe survives the store (SQLite JSON and PostgreSQL jsonb, which reorders
mapping keys) unchanged in meaning, and a study on each shipped space runs to the end on each database.

The studies use the real engine (`new_study` + `run_study`, in process) with a runner that checks the
compiled configuration it gets, as the trial job would, and reports a synthetic score instead of training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from autopeft.engine.definition import StudyDefinition
from autopeft.engine.loop import Budget
from autopeft.engine.study import new_study, run_study
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.peft import PeftPlan
from autopeft.peft.expressible import peft_reasons
from autopeft.peft.roles import ARCHITECTURES
from autopeft.space import load_space
from autopeft.space.config import TrialConfig
from autopeft.status import TrialStatus
from autopeft.store import Store, StudyStatus
from autopeft.train.recipe import load_recipe
from autopeft.yamlio import read_yaml

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
RECIPES = sorted((ROOT / "trials").glob("*.yaml"))
DEMO = ROOT / "trials" / "demo.yaml"
NUM_LAYERS = 6  # MiniLM-L6, the model of both shipped recipes


def test_the_shipped_files_are_all_here() -> None:
    assert {p.stem for p in SPACES} >= {"autopeft", "lora", "lora_peft", "mixed", "quickstart"}
    assert {p.stem for p in RECIPES} >= {"demo", "minilm-sst2"}


@pytest.mark.parametrize("space_path", SPACES, ids=lambda p: p.stem)
def test_a_stored_space_means_what_its_file_says(store_url: str, space_path: Path) -> None:
    store = Store(store_url)
    name, _ = new_study(store, space_path, DEMO, name="s", strategy="hyperband")
    stored = StudyDefinition.from_record(store.get_study(name))
    store.close()
    written = load_space(space_path)
    space = stored.search_space()
    assert stored.space == read_yaml(space_path)
    assert space == written
    assert list(space.dimensions(NUM_LAYERS)) == list(written.dimensions(NUM_LAYERS))
    assert space.dimensions(NUM_LAYERS) == written.dimensions(NUM_LAYERS)


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_a_stored_recipe_means_what_its_file_says(store_url: str, recipe_path: Path) -> None:
    store = Store(store_url)
    name, _ = new_study(store, SPACES[0], recipe_path, name="r", strategy="hyperband", seed=3, budget=2.0)
    stored = StudyDefinition.from_record(store.get_study(name))
    store.close()
    assert stored.recipe == read_yaml(recipe_path)
    assert stored.trial_recipe() == load_recipe(recipe_path)
    options = dict(stored.options)
    seeds = options.pop("seeds")
    assert options == {"strategy": "hyperband", "seed": 3, "eta": 3.0, "budget": 2.0}
    # The space's defaults, to be proposed first, as stored (jsonb reorders keys; values and order stay).
    assert [(s["name"], s["config"]) for s in seeds] == load_space(SPACES[0]).default_configs(NUM_LAYERS)
    # The score's hypervolume reference is the task's chance score (always the most common label).
    recipe = stored.trial_recipe()
    if recipe.task.name == "demo":
        from autopeft.train.tasks.loader import load_task

        chance = load_task(recipe.task, recipe.base_dir).chance
        assert 0.3 < chance < 0.9 and stored.objectives[0].reference == pytest.approx(chance)
    assert (stored.min_fidelity, stored.max_fidelity) == (stored.trial_recipe().fidelity.min,
                                                          stored.trial_recipe().fidelity.max)


@pytest.mark.parametrize("space_path", SPACES, ids=lambda p: p.stem)
def test_a_study_on_every_shipped_space_runs(store_url: str, space_path: Path, tmp_path: Path) -> None:
    written = load_space(space_path)
    seen: list[int] = []

    def runner(task: TrialTask) -> TrialOutcome:
        """What the trial job checks before training: a valid `TrialConfig` whose plan fits the model,
        and the one the space file compiles the configuration to."""
        config = TrialConfig.model_validate(dict(task.trial_config or {}))
        plan = PeftPlan.from_selectors(config.plan, NUM_LAYERS)
        assert config == written.compile(task.config, NUM_LAYERS)
        if written.needs_peft:  # the sampler was told so: every trial can be exported to peft (MiniLM is a BERT)
            assert peft_reasons(plan, ARCHITECTURES["bert"]) == []
        seen.append(task.number)
        size = len(config.plan)
        score = (0.5 + 0.04 * size) * (1 - 0.5 * math.exp(-task.fidelity / 30))
        values = {"score": score, "trainable_params": 1000.0 * (1 + size), "train_seconds": 0.01, "peak_memory_mb": 1.0}
        return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity, values, {"trainable_share": 0.01},
                            worker=str(os.getpid()))

    store = Store(store_url)
    name, _ = new_study(store, space_path, DEMO, name="run", strategy="hyperband", seed=1)
    defaults = [config for _, config in written.default_configs(NUM_LAYERS)]
    # The defaults train straight to full fidelity under Hyperband; one full trial's budget more for the search.
    summary = run_study(store, name, budget=Budget(trials=len(defaults) + 1.0), executor="inprocess", runner=runner,
                        runs_dir=tmp_path / "runs")
    trials = store.trials(name)
    assert summary.status is StudyStatus.COMPLETE
    assert seen and len(trials) >= len(defaults) + 1
    assert [t.config for t in trials[:len(defaults)]] == defaults  # the space's defaults were proposed first
    max_f = int(store.get_study(name).recipe["spec"]["fidelity"]["max"])
    assert all(t.bracket == max(x.bracket or 0 for x in trials) for t in trials[:len(defaults)])
    assert {r.trial_id for r in store.results(name) if r.fidelity == max_f} >= {t.id for t in trials[:len(defaults)]}
    assert [t.error for t in trials if t.status is TrialStatus.FAILED] == []
    assert store.latest_pareto_snapshot(name) is not None
    store.close()
