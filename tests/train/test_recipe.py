"""Trial recipes and configurations from YAML: the shipped files load, and every misfit is one
`ConfigError` line naming the file and the field path (with the accepted values where there is a list)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autopeft.errors import AutopeftError, ConfigError
from autopeft.peft.plan import METHOD_NAMES
from autopeft.space.config import TrialConfig
from autopeft.train.job import TrialJob
from autopeft.train.recipe import TrialRecipe, load_config, load_recipe
from tests.conftest import tiny_recipe_dict

REPO = Path(__file__).resolve().parents[2]
RECIPE = {"model": {"name": "minilm-l6"}, "task": {"name": "demo"}, "fidelity": {"min": 1, "max": 5}}


def _write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _error(loader: object, path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loader(path)  # type: ignore[operator]
    err = info.value
    assert "\n" not in str(err), "errors are one line"
    assert str(err).startswith(f"{path}: "), "errors start with the file"
    assert err.source == str(path)
    return err


# --- the shipped recipes -------------------------------------------------------------------------


def test_demo_recipe_loads() -> None:
    recipe = load_recipe(REPO / "trials/demo.yaml")
    assert recipe.model.name == "minilm-l6"
    assert recipe.task.name == "demo"
    assert (recipe.fidelity.unit, recipe.fidelity.min, recipe.fidelity.max) == ("steps", 10, 90)
    assert recipe.training.batch_size == 16
    assert recipe.base_dir == (REPO / "trials").resolve()


def test_sst2_recipe_loads() -> None:
    recipe = load_recipe(REPO / "trials/minilm-sst2.yaml")
    assert recipe.task.name == "sst2"
    assert recipe.fidelity.unit == "examples"
    assert recipe.fidelity.to_steps(recipe.fidelity.max, recipe.training.batch_size) == 16384 // 32
    assert recipe.fidelity.to_steps(1000, 32) == 32  # rounds up


@pytest.mark.parametrize("name", ["lora-qv.yaml", "mixed.yaml"])
def test_example_configs_load(name: str) -> None:
    config = load_config(REPO / "examples/configs" / name)
    assert config.plan
    assert config.learning_rate is not None


def test_recipe_without_file_uses_cwd() -> None:
    assert TrialRecipe.model_validate(RECIPE).base_dir == Path.cwd()


# --- recipe errors --------------------------------------------------------------------------------


def test_unknown_top_level_field_lists_accepted(tmp_path: Path) -> None:
    err = _error(load_recipe, _write(tmp_path / "r.yaml", {**RECIPE, "bogus": 1}))
    assert err.field == "bogus"
    assert "unknown field" in str(err)
    for name in ("model", "task", "fidelity", "training"):
        assert name in str(err).split("accepted:")[1]


def test_unknown_nested_field_names_its_path(tmp_path: Path) -> None:
    err = _error(load_recipe, _write(tmp_path / "r.yaml", {**RECIPE, "training": {"lr": 0.1}}))
    assert err.field == "training.lr"
    accepted = str(err).split("accepted:")[1]
    assert "learning_rate" in accepted and "batch_size" in accepted


def test_fidelity_min_above_max(tmp_path: Path) -> None:
    err = _error(load_recipe, _write(tmp_path / "r.yaml", {**RECIPE, "fidelity": {"min": 10, "max": 5}}))
    assert err.field == "fidelity"
    assert "min (10) must not exceed max (5)" in str(err)


def test_fidelity_not_positive(tmp_path: Path) -> None:
    err = _error(load_recipe, _write(tmp_path / "r.yaml", {**RECIPE, "fidelity": {"min": 0, "max": 5}}))
    assert err.field == "fidelity.min"


def test_missing_model(tmp_path: Path) -> None:
    data = {k: v for k, v in RECIPE.items() if k != "model"}
    err = _error(load_recipe, _write(tmp_path / "r.yaml", data))
    assert err.field == "model"
    assert "required" in str(err).lower()


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    err = _error(load_recipe, _write(tmp_path / "r.yaml", "model: {name: x}\ntask: [\n"))
    assert "not valid YAML at line" in str(err)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    err = _error(load_recipe, _write(tmp_path / "r.yaml", "- a\n- b\n"))
    assert "mapping" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    err = _error(load_recipe, tmp_path / "nope.yaml")
    assert "file not found" in str(err)
    assert isinstance(err, AutopeftError) and isinstance(err, ValueError)


# --- configurations -------------------------------------------------------------------------------


def test_training_for_applies_overrides() -> None:
    recipe = TrialRecipe.model_validate({**RECIPE, "training": {"learning_rate": 1e-3, "lr_schedule": "cosine",
                                                                "batch_size": 4}})
    config = TrialConfig.model_validate({"plan": {"all": []}, "learning_rate": 3e-4, "warmup_ratio": 0.2})
    training = recipe.training_for(config)
    assert training.learning_rate == 3e-4
    assert training.warmup_ratio == 0.2
    assert training.lr_schedule == "cosine"  # not overridden: the recipe's
    assert training.batch_size == 4
    assert recipe.training.learning_rate == 1e-3, "the recipe itself is left alone"


def test_training_for_without_overrides_is_the_recipe() -> None:
    recipe = TrialRecipe.model_validate(RECIPE)
    assert recipe.training_for(TrialConfig.model_validate({"plan": {}})) == recipe.training


def test_config_unknown_field(tmp_path: Path) -> None:
    err = _error(load_config, _write(tmp_path / "c.yaml", {"plan": {"all": []}, "lr": 1e-3}))
    assert err.field == "lr"
    assert "plan" in str(err).split("accepted:")[1]


def test_config_negative_learning_rate(tmp_path: Path) -> None:
    err = _error(load_config, _write(tmp_path / "c.yaml", {"plan": {"all": []}, "learning_rate": -1}))
    assert err.field == "learning_rate"


# Plan errors: the plan's layer count is only known once the model is loaded, so `TrainingSession`
# (through `PeftPlan.from_selectors`) raises them, naming the config file given as `config_source`.

BAD_PLANS = {
    "unknown method": ({"all": [{"method": "loraz", "r": 4}]}, "plan.all",
                       f"accepted: {', '.join(METHOD_NAMES)}"),
    "rank 0": ({"all": [{"method": "lora", "r": 0}]}, "plan.all", "r: Input should be greater than 0"),
    "layer out of range": ({"7": [{"method": "lora", "r": 4}]}, "plan.7", "layer 7 is out of range; the model "
                           "has layers 0-2"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_bad_plan_raised_when_the_session_builds(case: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    plan, field, message = BAD_PLANS[case]
    path = _write(tmp_path / "c.yaml", {"plan": plan})
    config = TrialConfig.model_validate({"plan": plan})  # bypasses load_config's early method check
    recipe = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir))
    job = TrialJob(recipe, config, config_source=str(path))
    with pytest.raises(ConfigError) as info:
        job.run(2)
    err = info.value
    assert str(err).startswith(f"{path}: {field}: ")
    assert message in str(err)
    assert "\n" not in str(err)
    assert err.field == field


@pytest.mark.parametrize("case", ["unknown method", "rank 0"])
def test_bad_method_raised_by_load_config(case: str, tmp_path: Path) -> None:
    plan, _, message = BAD_PLANS[case]
    err = _error(load_config, _write(tmp_path / "c.yaml", {"plan": plan}))
    assert message in str(err)
