"""`autopeft space check` through Typer's CliRunner: the four shipped spaces on a tiny saved BERT and on the
packaged MiniLM (`trials/demo.yaml`, config only), as a table and as JSON; bad spaces as one stderr line
naming the file and field, with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from tests.cli import one_line_error
from tests.conftest import tiny_recipe_dict

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
SPACES = ("quickstart", "lora", "mixed", "autopeft")


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A recipe on the 3-layer tiny BERT (too few layers for quickstart's layers 3-5)."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir)), encoding="utf-8")
    return path


def _check(space: str | Path, recipe: Path, *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["space", "check", str(space), "--trial", str(recipe), *extra])
    return result.exit_code, result.stdout, result.stderr




@pytest.mark.parametrize("name", SPACES)
def test_check_demo_recipe_json(name: str) -> None:
    code, out, err = _check(ROOT / f"search_spaces/{name}.yaml", ROOT / "trials/demo.yaml", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["space"] == name and report["model"] == "minilm-l6"
    assert report["num_layers"] == 6
    assert report["searched_layers"] == ([3, 4, 5] if name == "quickstart" else list(range(6)))
    assert report["dimensions"] > report["conditional"] >= 0
    rng = report["trainable_params"]
    assert rng["exact"] and rng["min"] == report["head_params"] == 770  # 384 x 2 labels + 2
    assert rng["min"] <= report["sample"]["trainable_params"] <= rng["max"]
    assert rng["max_share"] == pytest.approx(rng["max"] / report["base_params"])
    if name == "lora":
        assert report["constraints"] == [{"name": "at most 2% of the model trains", "max_trainable_share": 0.02}]
        assert report["feasible_trainable_params"]["max"] <= 0.02 * report["base_params"] < rng["max"]
    else:
        assert report["constraints"] == []


@pytest.mark.parametrize("name", ["quickstart", "lora"])
def test_check_table(name: str) -> None:
    code, out, err = _check(ROOT / f"search_spaces/{name}.yaml", ROOT / "trials/demo.yaml")
    assert code == 0, err
    for text in (f"search space {name}", "layers searched", "dimensions", "trainable min", "trainable max",
                 "sample (seed 0)"):
        assert text in out
    assert ("allowed max" in out) == (name == "lora")


@pytest.mark.parametrize(("name", "dimensions"), [("lora", 2 + 3 * 4), ("mixed", 1 + 3 * 4), ("autopeft", 1 + 3 * 3)])
def test_check_tiny_recipe(name: str, dimensions: int, tiny_recipe: Path) -> None:
    code, out, err = _check(ROOT / f"search_spaces/{name}.yaml", tiny_recipe, "--json", "--seed", "3")
    assert code == 0, err
    report = json.loads(out)
    assert report["num_layers"] == 3 and report["sample"]["seed"] == 3
    assert report["dimensions"] == dimensions
    assert report["trainable_params"]["min"] <= report["sample"]["trainable_params"]


def test_quickstart_needs_six_layers(tiny_recipe: Path) -> None:
    code, _, err = _check(ROOT / "search_spaces/quickstart.yaml", tiny_recipe)
    assert code == 2
    line = one_line_error(err)
    assert "quickstart.yaml" in line and "searched_layers" in line


@pytest.mark.parametrize(("text", "field"), [
    ("name: bad\nlayers:\n  rank: {int: [1, 8], lg: true}\nplan:\n  - {method: lora, r: $rank}\n", "layers.rank.lg"),
    ("name: bad\nlayers:\n  rank: {int: [1, 8]}\nplan:\n  - {method: lora, r: $rnk}\n", "plan.0"),
    ("name: bad\nplan: [{method: lora, r: 2}]\nconstraints: [{max_trainable_share: 2}]\n", "constraints.0"),
    ("name: bad\nlayers: {rank: {int: [1, 8]\n", "line"),
])
def test_bad_space_is_one_line(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = _check(path, ROOT / "trials/demo.yaml")
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert str(path) in line and field in line


def test_missing_recipe_is_one_line(tmp_path: Path) -> None:
    code, _, err = _check(ROOT / "search_spaces/mixed.yaml", tmp_path / "nope.yaml")
    assert code == 2
    assert "nope.yaml: file not found" in one_line_error(err)


def test_check_prints_the_rung_ladder_and_the_proposals() -> None:
    code, out, err = _check(ROOT / "search_spaces/quickstart.yaml", ROOT / "trials/demo.yaml")
    assert code == 0, err
    for text in ("rungs (eta 3)", "10 -> 30 -> 90 steps", "proposals", "random until 8 results at one", "BoTorch"):
        assert text in out
    assert "warning" not in out  # no budget given: nothing to compare
    code, out, err = _check(ROOT / "search_spaces/quickstart.yaml", ROOT / "trials/demo.yaml", "--budget", "4")
    assert code == 0, err
    assert out.count("warning") == 2 and "every proposal will be random" in out and "small for the ladder" in out


def test_check_json_has_the_plan_of_the_study() -> None:
    from autopeft.engine.announce import study_plan

    code, out, err = _check(ROOT / "search_spaces/quickstart.yaml", ROOT / "trials/demo.yaml", "--json",
                            "--strategy", "hyperband", "--eta", "9", "--budget", "6")
    assert code == 0, err
    plan = json.loads(out)["study"]
    assert plan == study_plan("hyperband", 10, 90, eta=9, budget=6, seeds=4).as_json()
    assert plan["rungs"] == [10, 90] and plan["model_after"] is None
    assert plan["seeds"] == 4  # the space's 4 defaults, each trained to full fidelity before the ladder fills
    code, out, _ = _check(ROOT / "search_spaces/quickstart.yaml", ROOT / "trials/demo.yaml", "--json",
                          "--strategy", "mobo")
    assert json.loads(out)["study"]["rungs"] == [90]


@pytest.mark.parametrize(("extra", "expected"), [
    (["--eta", "1"], "error: eta: must be a number >= 2, got 1.0"),
    (["--strategy", "bayes"], "error: strategy: unknown strategy 'bayes'; accepted: mobo-hyperband"),
])
def test_check_bad_study_options_are_one_line(extra: list[str], expected: str) -> None:
    code, out, err = _check(ROOT / "search_spaces/quickstart.yaml", ROOT / "trials/demo.yaml", *extra)
    assert code == 2 and out == "" and one_line_error(err).startswith(expected)
