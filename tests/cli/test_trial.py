"""`autopeft trial run` through Typer's CliRunner (stdout and stderr apart): JSON and table results on a
tiny saved BERT, and every user error as one stderr line naming the file and field, with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.peft.plan import METHOD_NAMES
from tests.cli import one_line_error
from tests.conftest import TINY_PLAN, tiny_recipe_dict

runner = CliRunner()


@pytest.fixture
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmax=6, threads=1)), encoding="utf-8")
    return path


def _config(tmp_path: Path, plan: dict[str | int, object], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"plan": plan, "learning_rate": 5e-3}), encoding="utf-8")
    return path




def test_trial_run_json(recipe_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "complete"
    assert data["fidelity"] == 6 and data["steps"] == 6
    assert 0.0 <= data["score"] <= 1.0
    assert data["trainable_params"] > 0
    assert data["dev_metrics"] is None


def test_trial_run_table_with_fidelity_dev_and_trial_dir(recipe_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    args = ["trial", "run", "--trial", str(recipe_file), "--config", str(config), "--fidelity", "3", "--dev",
            "--trial-dir", str(tmp_path / "t")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for key in ("status", "complete", "score", "dev_metrics", "accuracy", "trainable_params", "trainable_share"):
        assert key in result.stdout
    assert (tmp_path / "t" / "state.pt").is_file()
    again = runner.invoke(app, [*args[:-2], "--trial-dir", str(tmp_path / "t"), "--fidelity", "6", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["steps"] == 6


BAD_PLANS: dict[str, tuple[dict[str | int, object], str, str]] = {
    "unknown method": ({"all": [{"method": "loraz", "r": 4}]}, "plan.all",
                       f"accepted: {', '.join(METHOD_NAMES)}"),
    "rank 0": ({"all": [{"method": "lora", "r": 0}]}, "plan.all", "greater than 0"),
    "layer out of range": ({"0-5": [{"method": "lora", "r": 4}]}, "plan.0-5", "layer 3 is out of range"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_bad_config_is_one_line_and_exit_2(case: str, recipe_file: Path, tmp_path: Path) -> None:
    plan, field, message = BAD_PLANS[case]
    config = _config(tmp_path, plan)
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(config), "--json"])
    assert result.exit_code == 2, result.output
    line = one_line_error(result.stderr)
    assert line.startswith(f"error: {config}: {field}: ")
    assert message in line
    assert result.stdout == ""


def test_missing_recipe_file(tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, ["trial", "run", "--trial", str(missing), "--config", str(config)])
    assert result.exit_code == 2
    assert one_line_error(result.stderr) == f"error: {missing}: file not found"


def test_bad_recipe_field(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tiny_recipe_dict(tiny_model_dir)
    data["fidelity"] = {"min": 20, "max": 10}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe), "--config", str(_config(tmp_path, {}))])
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert line.startswith(f"error: {recipe}: fidelity: ") and "must not exceed" in line


def test_fidelity_above_max(recipe_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(config),
                                 "--fidelity", "7"])
    assert result.exit_code == 2
    assert one_line_error(result.stderr) == "error: fidelity: 7 is outside 1-6 (steps)"


def test_trial_dir_of_another_config_is_one_line(recipe_file: Path, tmp_path: Path) -> None:
    trial_dir = tmp_path / "t"
    first = _config(tmp_path, TINY_PLAN, "first.yaml")
    runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(first), "--fidelity", "2",
                        "--trial-dir", str(trial_dir), "--json"])
    other = _config(tmp_path, {"2": [{"method": "lora", "r": 2}]}, "other.yaml")
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(other),
                                 "--trial-dir", str(trial_dir), "--json"])
    assert result.exit_code == 2
    assert "another configuration" in one_line_error(result.stderr)


def test_trial_run_help() -> None:
    result = runner.invoke(app, ["trial", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--trial", "--config", "--fidelity", "--json", "--trial-dir", "--dev"):
        assert option in result.stdout


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "trial" in result.output
