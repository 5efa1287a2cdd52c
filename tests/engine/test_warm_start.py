"""Warm start (`engine.warm_start`): a new study's seeds are another study's front, best score first, then its
space's defaults, each configuration once; another space, an unknown study, a study with no full-fidelity
trial, or a model its front does not compile on are refused naming `--warm-start`. Studies run by the real
loop on the tiny model's recipe, with a runner that scores in microseconds."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from autopeft.engine.announce import seeds_line
from autopeft.engine.checks import CheckedStudy, check_study
from autopeft.engine.definition import StudyDefinition
from autopeft.engine.front import study_front
from autopeft.engine.loop import Budget
from autopeft.engine.study import create_study, run_study, seed_configs
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.engine.warm_start import origin_label, seed_origins, warm_start_name, warm_start_seeds
from autopeft.errors import ConfigError
from autopeft.space.encoding import config_key
from autopeft.status import TrialStatus
from autopeft.store import Store
from tests.conftest import tiny_recipe_dict

DEFAULTS = [
    {"name": "LoRA r=2 on query and value", "values": {"learning_rate": 5.0e-3, "method": "lora", "rank": 2}},
    {"name": "IA3", "values": {"learning_rate": 5.0e-3, "method": "ia3"}},
    {"name": "the head alone", "values": {"learning_rate": 5.0e-3, "method": "none"}},
]
SPACE: dict[str, Any] = {
    "name": "warm",
    "training": {"learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}},
    "searched_layers": "all",
    "layers": {"method": {"choices": ["none", "lora", "ia3"]},
               "rank": {"choices": [2, 4], "when": {"method": ["lora"]}}},
    "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}},
             {"method": "ia3", "when": {"method": ["ia3"]}}],
    "defaults": DEFAULTS,
}


def fake_runner(task: TrialTask) -> TrialOutcome:
    """A score from the learning rate and a size from the adapted layers: a trade-off, in microseconds."""
    config = task.config
    methods = [v for k, v in config.items() if k.endswith(".method")]
    size = 100 + sum({"none": 0, "ia3": 10, "lora": 40 * int(config.get(k.replace("method", "rank"), 1))}[m]
                     for k, m in config.items() if k.endswith(".method"))
    score = 0.5 + 0.1 * abs(math.log10(float(config["learning_rate"])) + 2.5) + 0.001 * len(methods)
    return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity, {"score": score, "trainable_params": size},
                        {"trainable_share": 0.01})


@pytest.fixture
def folder(tmp_path: Path, tiny_model_dir: Path) -> Path:
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=2)),
                                          encoding="utf-8")
    _space(tmp_path, "space.yaml", SPACE)
    return tmp_path


def _space(folder: Path, name: str, space: dict[str, Any]) -> Path:
    (folder / name).write_text(yaml.safe_dump(space), encoding="utf-8")
    return folder / name


def _study(store: Store, folder: Path, name: str, *, space: str = "space.yaml", recipe: str = "recipe.yaml",
           defaults: bool = True, budget: float | None = None) -> CheckedStudy:
    """Create study ``name`` (random proposals, full fidelity) and run it to ``budget`` full trials, if given."""
    checked = check_study(folder / space, folder / recipe, name=name, strategy="random", seed=1, defaults=defaults)
    create_study(store, checked)
    if budget is not None:
        run_study(store, name, budget=Budget(trials=budget), executor="inprocess", runner=fake_runner,
                  runs_dir=folder / "runs")
    return checked


def test_the_front_comes_first_best_score_first_then_the_defaults_each_once(folder: Path) -> None:
    store = Store(f"sqlite:///{folder / 'store.db'}")
    _study(store, folder, "other", budget=6)  # its three defaults, then three random configurations
    front = study_front(store, "other")
    assert front.entries and [e.objectives["score"] for e in front.entries] == sorted(
        (e.objectives["score"] for e in front.entries), reverse=True)
    checked = check_study(folder / "space.yaml", folder / "recipe.yaml", name="new", strategy="random")
    seeds = warm_start_seeds(store, "other", checked)

    from_front = [(warm_start_name("other", e.number), e.config) for e in front.entries]
    on_front = {config_key(e.config) for e in front.entries}
    rest = [(n, c) for n, c in checked.seeds if config_key(c) not in on_front]
    assert list(seeds) == [*from_front, *rest]
    assert len({config_key(c) for _, c in seeds}) == len(seeds) == len(front.entries) + len(rest)
    assert len(rest) < len(DEFAULTS), "the other study's front holds one of the defaults it proposed first"
    assert seeds_line(seeds) == (f"first: {len(front.entries)} from the front of other, then {len(rest)} of the "
                                 "space's defaults")

    # Stored with the new study: its trials are labelled by where they came from.
    _, definition = create_study(store, replace(checked, seeds=seeds))
    assert seed_configs(definition) == [c for _, c in seeds]
    stored = StudyDefinition.from_record(store.get_study("new"))
    assert json.loads(json.dumps(dict(stored.options)))["seeds"][0]["name"] == from_front[0][0]
    origins = seed_origins(stored)
    assert origins[config_key(from_front[0][1])] == f"warm start: other #{front.entries[0].number}"
    for name, config in rest:
        assert origins[config_key(config)] == origin_label(name) == f"default: {name}"
    store.close()


def test_without_defaults_the_seeds_are_the_front_alone(folder: Path) -> None:
    store = Store(f"sqlite:///{folder / 'store.db'}")
    _study(store, folder, "other", budget=4, defaults=False)
    checked = check_study(folder / "space.yaml", folder / "recipe.yaml", strategy="random", defaults=False)
    assert checked.seeds == ()
    seeds = warm_start_seeds(store, "other", checked)
    assert [n for n, _ in seeds] == [warm_start_name("other", e.number) for e in study_front(store, "other").entries]
    store.close()


def test_bad_warm_starts_are_one_line_naming_the_option(folder: Path, tiny_model_dir: Path) -> None:
    store = Store(f"sqlite:///{folder / 'store.db'}")
    _study(store, folder, "other", budget=2)
    _study(store, folder, "idle")  # created, never run
    other_space = {**SPACE, "layers": {**SPACE["layers"], "rank": {"choices": [2, 8], "when": {"method": ["lora"]}}}}
    _space(folder, "other_space.yaml", other_space)
    _space(folder, "renamed.yaml", {**SPACE, "name": "renamed", "description": "the same", "defaults": []})
    checked = check_study(folder / "space.yaml", folder / "recipe.yaml", strategy="random")

    def refused(other: str, study: CheckedStudy = checked) -> str:
        with pytest.raises(ConfigError) as caught:
            warm_start_seeds(store, other, study)
        text = str(caught.value)
        assert text.startswith("--warm-start: ") and "\n" not in text, text
        return text

    assert "no study 'nope' in" in refused("nope") and "studies: other, idle" in refused("nope")
    assert "'idle' has no trial complete at full fidelity" in refused("idle")
    checked_chance = check_study(folder / "space.yaml", folder / "recipe.yaml", name="chance", strategy="random")
    create_study(store, checked_chance)
    run_study(store, "chance", budget=Budget(trials=2), executor="inprocess", runs_dir=folder / "runs",
              runner=lambda task: replace(fake_runner(task), objectives={"score": 0.0, "trainable_params": 100}))
    assert "none of the 2 trials of study 'chance' at full fidelity scores better than chance" in refused("chance")
    wider = check_study(folder / "other_space.yaml", folder / "recipe.yaml", strategy="random")
    assert "study 'other' searched another space (its layers differ from" in refused("other", wider)
    # Name, description and defaults do not change what a configuration is: the same space.
    renamed = check_study(folder / "renamed.yaml", folder / "recipe.yaml", strategy="random")
    assert next(n for n, _ in warm_start_seeds(store, "other", renamed)).startswith("warm start: other #")

    # A model with another layer count: the space searches every layer, so the front does not compile there.
    deeper = folder / "deeper-model"
    shutil.copytree(tiny_model_dir, deeper)
    config = json.loads((deeper / "config.json").read_text(encoding="utf-8"))
    (deeper / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 4}), encoding="utf-8")
    (folder / "deeper.yaml").write_text(yaml.safe_dump(tiny_recipe_dict(deeper, fmin=2, fmax=2)), encoding="utf-8")
    four = check_study(folder / "space.yaml", folder / "deeper.yaml", strategy="random")
    assert four.counter.num_layers == 4
    assert "of study 'other' does not fit this study's model (4 layers): layer_3.method" in refused("other", four)
    store.close()


def test_the_seeds_line_counts_what_will_be_proposed() -> None:
    lora, head = {"m": "lora"}, {"m": "none"}
    assert seeds_line(()) is None
    assert seeds_line((("LoRA", lora), ("head", head))) == "first: 2 of the space's defaults"
    assert seeds_line((("warm start: a #3", lora), ("head", head))) == \
        "first: 1 from the front of a, then 1 of the space's defaults"
    assert seeds_line((("LoRA", lora), ("head", head)), lambda c: c["m"] == "none") == \
        "first: 1 of the space's defaults (1 more default breaks the space's constraints on this model: skipped)"
    assert seeds_line((("warm start: a b #3", lora),), lambda c: False) == "first: 1 from the front of a b"


def test_under_hyperband_the_seeds_train_straight_to_full_fidelity(store_url: str, tmp_path: Path,
                                                                   tiny_model_dir: Path) -> None:
    """A Hyperband study (fidelity 2 to 8, eta 2): the defaults start in the top bracket and reach fidelity 8,
    so `pareto` can compare them, while the other trials start across the brackets."""
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=8)),
                                          encoding="utf-8")
    _space(tmp_path, "space.yaml", SPACE)
    store = Store(store_url)
    checked = check_study(tmp_path / "space.yaml", tmp_path / "recipe.yaml", name="hb", strategy="hyperband", seed=3,
                          eta=2.0)
    create_study(store, checked)
    run_study(store, "hb", budget=Budget(trials=6), executor="inprocess", runner=fake_runner, runs_dir=tmp_path / "r")
    trials = store.trials("hb")
    seeds = {config_key(c) for c in seed_configs(StudyDefinition.from_record(store.get_study("hb")))}
    assert len(seeds) == 3
    seeded = [t for t in trials if config_key(t.config) in seeds]
    assert [t.number for t in seeded] == [0, 1, 2]
    reached = {r.trial_id: r.fidelity for r in store.results("hb")}
    assert all(t.bracket == 2 and reached[t.id] == 8 for t in seeded)
    assert {t.bracket for t in trials if t.number > 2} - {2}  # the others start lower too
