"""`engine.checks`: every input of a study checked before anything is written, on a tiny saved BERT.

Spaces are compiled against the model (rank 0, an unknown role or method, a learning rate the trial
refuses, constraints nothing meets), options are checked one by one, and `new_study` writes no row when
any check fails."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from autopeft.engine.checks import (
    check_run_options,
    check_storage,
    check_study,
    check_study_options,
    checked_space,
)
from autopeft.engine.study import new_study
from autopeft.errors import AutopeftError, ConfigError, DataError
from autopeft.store import Store
from autopeft.train.recipe import load_recipe
from tests.conftest import tiny_recipe_dict

LORA_SPACE: dict[str, Any] = {
    "name": "tiny",
    "training": {"learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}},
    "layers": {"method": {"choices": ["none", "lora"]},
               "rank": {"int": [1, 8], "when": {"method": ["lora"]}}},
    "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}}],
}


@pytest.fixture
def recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=4)), encoding="utf-8")
    return path


def _space(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**LORA_SPACE, **changes}), encoding="utf-8")
    return path


def test_a_good_study_passes_every_check(tmp_path: Path, recipe: Path) -> None:
    checked = check_study(_space(tmp_path), recipe, name="ok", strategy="random", seed=3, budget=2)
    assert checked.name == "ok" and checked.strategy == "random" and checked.seed == 3
    assert checked.counter.num_layers == 3
    low, high = checked.counter.bounds()
    assert low == checked.counter.head_params < high


@pytest.mark.parametrize(("layers", "plan", "field", "words"), [
    ({"method": {"choices": ["none", "lora"]}, "rank": {"int": [0, 8], "when": {"method": ["lora"]}}},
     None, "layers.rank", "0 gives lora.r: Input should be greater than 0 (plan.0)"),
    ({"method": {"choices": ["none", "lora"]}, "rank": {"choices": [-4, 4], "when": {"method": ["lora"]}}},
     None, "layers.rank", "-4 gives lora.r"),
    ({"method": {"choices": ["none", "lorax"]}}, [{"method": "$method", "r": 4}], "layers.method",
     "'lorax': not a method; accepted: lora"),
    ({"roles": {"choices": [["query"], ["query", "nose"]]}}, [{"method": "lora", "r": 2, "roles": "$roles"}],
     "layers.roles", "'nose' is not a role; accepted: query, key"),
    ({}, [{"method": "lora", "r": 0}], "plan.0.r", "greater than 0"),
    ({}, [{"method": "ia3", "r": 4}], "plan.0.r", "ia3 has no field 'r'"),
])
def test_plan_values_are_compiled_against_the_model(tmp_path: Path, recipe: Path, layers: dict[str, Any],
                                                    plan: list[dict[str, Any]] | None, field: str,
                                                    words: str) -> None:
    space = _space(tmp_path, layers=layers, **({"plan": plan} if plan is not None else {}))
    with pytest.raises(ConfigError) as caught:
        checked_space(space, load_recipe(recipe))
    assert caught.value.source == str(space) and caught.value.field == field
    assert words in str(caught.value)


def test_only_the_values_a_plan_entry_applies_to_are_compiled(tmp_path: Path, recipe: Path) -> None:
    """`rank` 0 is fine where the entry that reads it never applies (its `when` excludes it)."""
    layers = {"rank": {"choices": [0, 4]}}
    plan = [{"method": "lora", "r": "$rank", "when": {"rank": [4]}}]
    _, counter = checked_space(_space(tmp_path, layers=layers, plan=plan), load_recipe(recipe))
    assert counter.bounds()[0] == counter.head_params


def test_a_learning_rate_the_trial_refuses(tmp_path: Path, recipe: Path) -> None:
    space = _space(tmp_path, training={"learning_rate": {"float": [-1.0, 1.0]}})
    with pytest.raises(ConfigError, match=r"training\.learning_rate: -1\.0: Input should be greater than 0"):
        checked_space(space, load_recipe(recipe))


def test_a_plan_entry_reading_an_inactive_parameter(tmp_path: Path, recipe: Path) -> None:
    space = _space(tmp_path, plan=[{"method": "lora", "r": "$rank"}])  # no `when`: rank is absent for none
    with pytest.raises(ConfigError, match=r"layer_0\.rank: missing .*give that entry a `when`"):
        checked_space(space, load_recipe(recipe))


def test_constraints_nothing_meets(tmp_path: Path, recipe: Path) -> None:
    space = _space(tmp_path, layers={}, plan=[{"method": "lora", "r": 4}], constraints=[{"max_trainable_params": 10}])
    with pytest.raises(ConfigError, match="constraints: no configuration satisfies the constraints"):
        check_study(space, recipe)
    checked_space(space, load_recipe(recipe))  # `space check` still reports on it


def test_errors_of_the_model_name_the_recipe(tmp_path: Path, recipe: Path) -> None:
    data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    recipe.write_text(yaml.safe_dump({**data, "model": {"name": str(tmp_path / "missing")}}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        check_study(_space(tmp_path), recipe)
    assert caught.value.source == str(recipe) and caught.value.field == "model.name"


def test_task_data_is_read(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "train.csv").write_bytes(b"sentence,label\ngood,1\nbad,0\nna\xefve,1\n")
    data = tiny_recipe_dict(tiny_model_dir)
    data["task"] = {"name": "files", "train": "train.csv", "text_columns": ["sentence"], "label_column": "label",
                    "labels": [0, 1]}
    recipe = tmp_path / "files.yaml"
    recipe.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv:4: byte 0xef at offset 30 is not UTF-8; re-encode"):
        check_study(_space(tmp_path), recipe)


@pytest.mark.parametrize(("options", "field"), [
    ({"name": "a/b"}, "name"), ({"name": " padded "}, "name"), ({"name": ".."}, "name"),
    ({"strategy": "grid"}, "strategy"), ({"seed": -1}, "seed"), ({"seed": 2**40}, "seed"),
    ({"objectives": ()}, "objectives"), ({"objectives": ("score", "flops")}, "objectives"),
    ({"eta": 1.5}, "eta"), ({"eta": math.inf}, "eta"),
])
def test_study_options(options: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"name": None, "strategy": "random", "seed": 0, "objectives": ("score",), "eta": 3.0,
                            **options}
    with pytest.raises(ConfigError) as caught:
        check_study_options(**args)
    assert caught.value.field == field


@pytest.mark.parametrize(("options", "field"), [
    ({"budget": 0.0}, "budget"), ({"budget": math.nan}, "budget"), ({"budget": None}, "budget"),
    ({"max_time": -5.0}, "max-time"), ({"workers": 0}, "workers"), ({"executor": "dask"}, "executor"),
    ({"executor": "inprocess", "workers": 2}, "workers"),
    ({"executor": "ray", "gpus_per_trial": -1.0}, "gpus-per-trial"), ({"executor": "ray", "cpus_per_trial": 0.0},
                                                                      "cpus-per-trial"),
    ({"executor": "ray", "ray_address": "head"}, "ray-address"), ({"gpus_per_trial": 1.0}, "gpus-per-trial"),
])
def test_run_options(options: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"budget": 1.0, "max_time": None, "workers": 1, "executor": "local", "runs_dir": None,
                            **options}
    with pytest.raises(ConfigError) as caught:
        check_run_options(**args)
    assert caught.value.field == field


def test_run_options_pass_and_resume_needs_no_budget(tmp_path: Path) -> None:
    run = check_run_options(budget=None, max_time=None, workers=2, executor="local", runs_dir=tmp_path,
                            require_budget=False)
    assert run.workers == 2 and run.budget.trials is None and run.runs_dir == tmp_path
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="runs-dir"):
        check_run_options(budget=1, max_time=None, workers=1, executor="local", runs_dir=tmp_path / "file")


@pytest.mark.parametrize(("url", "words"), [
    ("mysql://u@h/db", "'mysql' is not supported"), ("nope", "not a database URL"),
    ("postgresql+psycopg2://u@h/db", "not installed"), ("sqlite:///{tmp}/none/x.db", "does not exist"),
    ("sqlite:///{tmp}", "is a folder"),
])
def test_storage_urls(tmp_path: Path, url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        check_storage(url.format(tmp=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_good_storage_urls(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path / 'a.db'}", "sqlite://", "postgresql+psycopg://postgres@127.0.0.1/test"):
        assert check_storage(url) == url
    assert list(tmp_path.iterdir()) == []  # checking opens nothing


def test_new_study_writes_nothing_when_a_check_fails(tmp_path: Path, recipe: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'studies.db'}")
    bad = _space(tmp_path, layers={}, plan=[{"method": "lora", "r": 0}])
    for kwargs in ({"eta": 1.0}, {"strategy": "x"}, {}):
        with pytest.raises(AutopeftError):
            new_study(store, bad if not kwargs else _space(tmp_path), recipe, name="s", **kwargs)
        bad = _space(tmp_path, layers={}, plan=[{"method": "lora", "r": 0}])
    assert store.list_studies() == []
    name, _ = new_study(store, _space(tmp_path), recipe, name="s", strategy="random")
    assert [s.name for s in store.list_studies()] == [name] == ["s"]
