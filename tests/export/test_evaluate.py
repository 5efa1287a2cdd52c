"""`evaluate_file` and `predict_file` on what `train_bundle` wrote (a tiny saved BERT on the demo task): the
dev file scores exactly what the final report measured, in `peft` format and in ours, through any columns
or spelling of the same data; predictions agree with the score; bad input fails before a model loads."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from autopeft.errors import ConfigError, DataError
from autopeft.export.bundle import Bundle, write_bundle
from autopeft.export.evaluate import data_path, evaluate_file, predict_file
from autopeft.export.final import train_bundle
from tests.conftest import tiny_recipe_dict

pytest.importorskip("peft")

PLANS = {
    "peft": {"1-2": [{"method": "lora", "r": 4, "alpha": 8, "roles": ["query", "value"]}]},
    "autopeft": {"2": [{"method": "parallel_adapter", "size": 8}]},
}
DEV = data_path("demo:dev")


def _train(folder: Path, model_dir: Path, plan: dict[str, Any], **task: Any) -> Path:
    folder.mkdir(parents=True)
    recipe = tiny_recipe_dict(model_dir, fmin=2, fmax=6, threads=1)
    if task:
        recipe["task"] = task
    bundle = Bundle.build(recipe, folder, {"plan": plan, "learning_rate": 5e-3})
    write_bundle(bundle, folder)
    return train_bundle(bundle, folder / "trained").out_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """One trained folder per adapter format."""
    root = tmp_path_factory.mktemp("evaluate")
    return {fmt: _train(root / fmt, tiny_model_dir, plan) for fmt, plan in PLANS.items()}


def _metrics(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "metrics.json").read_text(encoding="utf-8")))


def _dev_rows() -> list[tuple[str, str]]:
    """(sentence, label) of the packaged dev file."""
    lines = DEV.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "sentence\tlabel"
    return [tuple(line.split("\t")) for line in lines[1:] if line]  # type: ignore[misc]


@pytest.mark.parametrize("fmt", sorted(PLANS))
def test_the_dev_file_scores_what_train_reported(fmt: str, trained: dict[str, Path]) -> None:
    folder = trained[fmt]
    metrics = _metrics(folder)
    assert metrics["adapter"]["format"] == fmt
    result = evaluate_file(folder, "demo:dev")
    assert result.examples == len(_dev_rows())
    assert result.score == metrics["dev_score"] and result.metrics == metrics["dev_metrics"]
    assert result.trained_dev_score == metrics["dev_score"] and result.metric == metrics["metric"]


@pytest.mark.parametrize("fmt", sorted(PLANS))
def test_predictions_agree_with_the_score(fmt: str, trained: dict[str, Path]) -> None:
    predictions = predict_file(trained[fmt], str(DEV))
    assert predictions.header == ["index", "label", "label_name", "prob_0", "prob_1"]
    rows = list(csv.DictReader(io.StringIO(predictions.csv_text())))
    gold = [label for _, label in _dev_rows()]
    assert [int(r["index"]) for r in rows] == list(range(len(gold)))
    for row in rows:
        assert abs(float(row["prob_0"]) + float(row["prob_1"]) - 1) < 1e-5
        assert row["label_name"] == ("positive" if row["label"] == "1" else "negative")
    accuracy = sum(r["label"] == g for r, g in zip(rows, gold, strict=True)) / len(gold)
    assert accuracy == evaluate_file(trained[fmt], "demo:dev").score


def test_the_same_data_in_other_files_scores_the_same(trained: dict[str, Path], tmp_path: Path) -> None:
    folder, rows = trained["peft"], _dev_rows()
    want = _metrics(folder)["dev_score"]
    names = {"0": "negative", "1": "positive"}
    headerless = tmp_path / "dev.tsv"  # label first, no header line, as many corpora ship
    headerless.write_text("".join(f"{label}\t{text}\n" for text, label in rows), encoding="utf-8")
    assert evaluate_file(folder, str(headerless), columns="1,0").score == want
    named = tmp_path / "dev.csv"  # other column names, labels by name
    with named.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("text", "gold"), *((text, names[label]) for text, label in rows)])
    assert evaluate_file(folder, str(named), columns="text,gold").score == want
    unlabelled = tmp_path / "texts.jsonl"
    unlabelled.write_text("".join(json.dumps({"text": text}) + "\n" for text, _ in rows), encoding="utf-8")
    assert len(predict_file(folder, str(unlabelled), columns="text").rows) == len(rows)


def test_a_peft_folder_and_an_export_folder_are_accepted(trained: dict[str, Path], tmp_path: Path) -> None:
    folder = trained["peft"]
    want = _metrics(folder)["dev_score"]
    assert evaluate_file(folder / "peft", "demo:dev").score == want  # autopeft.yaml two folders up
    export = tmp_path / "best"  # `autopeft export`'s layout: autopeft.yaml and peft/ with weights
    export.mkdir()
    shutil.copy(folder.parent / "autopeft.yaml", export / "autopeft.yaml")
    shutil.copytree(folder / "peft", export / "peft")
    assert evaluate_file(export, "demo:dev").score == want


def test_a_headerless_files_task_end_to_end(tmp_path: Path, tiny_model_dir: Path, glue_dir: Path) -> None:
    """A recipe on a header-less TSV (label, sentence; rows from CoLA) trains, and its dev file scores the same."""
    lines = (glue_dir / "cola" / "train.tsv").read_text(encoding="utf-8").splitlines()[:120]
    rows = [(f[1], f[3]) for f in (line.split("\t") for line in lines)]
    data = tmp_path / "data"
    data.mkdir()
    for name, part in (("train.tsv", rows[:90]), ("dev.tsv", rows[90:])):
        (data / name).write_text("".join(f"{label}\t{text}\n" for label, text in part), encoding="utf-8")
    task = {"name": "files", "train": str(data / "train.tsv"), "dev": str(data / "dev.tsv"), "header": False,
            "text_columns": [1], "label_column": 0, "max_length": 32, "metric": "matthews"}
    folder = _train(tmp_path / "cola", tiny_model_dir, PLANS["peft"], **task)
    metrics = _metrics(folder)
    result = evaluate_file(folder, str(data / "dev.tsv"))
    assert result.metric == "matthews" and result.examples == 30
    assert result.score == metrics["dev_score"] and result.metrics == metrics["dev_metrics"]
    predictions = predict_file(folder, str(data / "dev.tsv"))
    assert predictions.header == ["index", "label", "prob_0", "prob_1"]  # label values are the names
    assert [row[1] for row in predictions.rows] != [] and {row[1] for row in predictions.rows} <= {"0", "1"}


def _one_output(model_dir: Path, out: Path) -> Path:
    """The tiny BERT with a one-output head (its checkpoint's head has two: a regression task cannot load it)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, ignore_mismatched_sizes=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def test_a_regression_task_scores_and_predicts_scores(tmp_path: Path, tiny_model_dir: Path) -> None:
    words = ["awful", "bad", "fine", "good", "great"]
    rows = [(f"{words[i % 5]} thing number {i}", i % 5 / 4) for i in range(60)]
    for name, part in (("train.csv", rows[:45]), ("dev.csv", rows[45:])):
        (tmp_path / name).write_text("text,score\n" + "".join(f"{t},{y}\n" for t, y in part), encoding="utf-8")
    task = {"name": "files", "train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv"),
            "text_columns": ["text"], "label_column": "score", "regression": True, "max_length": 16}
    folder = _train(tmp_path / "reg", _one_output(tiny_model_dir, tmp_path / "model"), PLANS["autopeft"], **task)
    metrics = _metrics(folder)
    result = evaluate_file(folder, str(tmp_path / "dev.csv"))
    assert result.metric == "pearson_spearman" and result.score == metrics["dev_score"]
    assert result.metrics == metrics["dev_metrics"]
    predictions = predict_file(folder, str(tmp_path / "dev.csv"), columns="text")
    assert predictions.header == ["index", "score"] and len(predictions.rows) == 15


@pytest.mark.parametrize(("args", "error", "words"), [
    (("nowhere", "demo:dev"), ConfigError, ("nowhere", "no such folder")),
    ((".", "demo:dev"), ConfigError, ("no trained adapter",)),
    (("{peft}", "missing.tsv"), ConfigError, ("missing.tsv", "--data", "file not found")),
    (("{peft}", "demo:test"), ConfigError, ("no packaged file 'demo:test'", "accepted: demo:dev")),
    (("{peft}", "demo:dev", "sentence,nope"), DataError, ("demo_dev.tsv", "no column 'nope'", "columns: sentence")),
    (("{peft}", "demo:dev", "sentence"), ConfigError, ("--columns", "names no label column")),
    (("{peft}", "demo:dev", "a,b,c"), ConfigError, ("--columns", "1 text column")),
    (("{peft}", "demo:dev", "sentence,1"), ConfigError, ("--columns", "all names", "all 0-based")),
])
def test_bad_input_fails_before_a_model_loads(args: tuple[str, ...], error: type[Exception], words: tuple[str, ...],
                                              trained: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import autopeft.train.session as session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "TrainingSession", None)  # loading a model would fail with TypeError
    folder, data, *columns = (a.replace("{peft}", str(trained["peft"])) for a in args)
    with pytest.raises(error) as err:
        evaluate_file(folder, data, columns=columns[0] if columns else None)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_weights_of_another_plan_are_refused(trained: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(trained["autopeft"].parent, folder)
    shutil.copy(trained["peft"] / "autopeft.yaml", folder / "trained" / "autopeft.yaml")  # a LoRA plan, adapter weights
    with pytest.raises(ConfigError, match=r"autopeft_adapter\.safetensors: does not fit the plan"):
        evaluate_file(folder / "trained", "demo:dev")
