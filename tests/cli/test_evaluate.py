"""`autopeft evaluate` and `autopeft predict` through the CLI, on the quickstart recipe (trials/demo.yaml: the
packaged MiniLM and demo task) trained for a few steps by `autopeft train`: the demo dev file scores what
`train` wrote in metrics.json, exactly; predict writes one row per example, whose accuracy is evaluate's;
bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.export.bundle import Bundle, write_bundle
from autopeft.export.evaluate import data_path
from autopeft.yamlio import read_yaml
from tests.cli import one_line_error

pytest.importorskip("peft")

runner = CliRunner()
DEMO_RECIPE = Path(__file__).resolve().parents[2] / "trials" / "demo.yaml"
LORA_TOP = {"4-5": [{"method": "lora", "r": 4, "alpha": 8, "roles": ["query", "value"]}]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`autopeft train` of a LoRA on the quickstart recipe, 4 steps (a few seconds)."""
    folder = tmp_path_factory.mktemp("demo-trained")
    bundle = Bundle.build(read_yaml(DEMO_RECIPE), DEMO_RECIPE.parent, {"plan": LORA_TOP, "learning_rate": 2e-3})
    path = write_bundle(bundle, folder)
    result = runner.invoke(app, ["train", str(path), "--fidelity", "4"])
    assert result.exit_code == 0, result.output
    return folder / "trained"


def test_evaluate_on_the_demo_dev_file_is_what_train_reported(trained: Path, tmp_path: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text(encoding="utf-8"))
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", str(trained), "--data", "demo:dev", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["score"] == metrics["dev_score"] and written["metrics"] == metrics["dev_metrics"]
    assert written["metric"] == "accuracy" and written["data"] == str(data_path("demo:dev"))
    assert f"accuracy: {metrics['dev_score']:.4f} on {written['examples']} examples" in result.stdout

    # the same file by its path, and predict's rows against its labels
    preds = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(trained), "--data", written["data"], "--out", str(preds)])
    assert result.exit_code == 0, result.output
    with preds.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with open(written["data"], encoding="utf-8") as handle:
        gold = [row["label"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    assert len(rows) == len(gold) == written["examples"]
    assert list(rows[0]) == ["index", "label", "label_name", "prob_0", "prob_1"]
    assert sum(r["label"] == g for r, g in zip(rows, gold, strict=True)) / len(gold) == written["score"]


def test_train_keeps_its_autopeft_yaml_so_any_out_folder_evaluates(trained: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(trained, moved)
    assert (moved / "autopeft.yaml").is_file()
    result = runner.invoke(app, ["evaluate", str(moved), "--data", "demo:dev"])
    assert result.exit_code == 0, result.output
    assert json.loads((trained / "metrics.json").read_text(encoding="utf-8"))["dev_score"] is not None


@pytest.mark.parametrize(("args", "words"), [
    (("evaluate", "{nope}", "--data", "demo:dev"), ("nope", "no such folder")),
    (("evaluate", "{.}", "--data", "demo:dev"), ("no trained adapter",)),
    (("evaluate", "{trained}", "--data", "{missing.tsv}"), ("missing.tsv", "--data", "file not found")),
    (("evaluate", "{trained}", "--data", "demo:dev", "--columns", "sentence,gold"), ("no column 'gold'",)),
    (("evaluate", "{trained}", "--data", "demo:dev", "--columns", "sentence"), ("--columns", "no label column")),
    (("evaluate", "{trained}", "--data", "demo:dev", "--out", "{.}"), ("--out", "is a folder")),
    (("evaluate", "{trained}", "--data", "demo:dev", "--out", "{no/such/dir.json}"), ("--out", "no such folder")),
    (("evaluate", "{trained}"), ("Missing option", "--data")),
    (("predict", "{trained}", "--data", "demo:dev"), ("Missing option", "--out")),
    (("predict", "{trained}", "--data", "demo:nope", "--out", "{p.csv}"), ("demo:nope", "accepted: demo:dev")),
    (("predict", "{trained}", "--data", "demo:dev", "--columns", "a,b,c", "--out", "{p.csv}"), ("--columns",)),
])
def test_bad_input_is_one_line_and_writes_nothing(args: tuple[str, ...], words: tuple[str, ...], trained: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*")), sorted(trained.rglob("*"))

    def expand(arg: str) -> str:
        if arg == "{trained}":
            return str(trained)
        return str(tmp_path / arg[1:-1]) if arg.startswith("{") else arg

    result = runner.invoke(app, [expand(a) for a in args])
    assert result.exit_code == 2, result.output
    line = one_line_error(result.stderr)
    for word in words:
        assert word in line, line
    assert (sorted(tmp_path.rglob("*")), sorted(trained.rglob("*"))) == before
