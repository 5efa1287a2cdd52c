"""`autopeft pareto`, `export` and `train` through Typer's CliRunner, on a study written through the `Store` API.

The study's results are fake but plausible (the engine is tested elsewhere); trial 1 also gets a real
saved state at full fidelity, so that `export` can write its trained weights. `train` runs the tiny
saved BERT end to end and its adapter is loaded by `peft`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.engine.definition import StudyDefinition, make_objectives
from autopeft.export.study_export import default_trial_dir
from autopeft.space.config import TrialConfig
from autopeft.store import Store, TrialStatus
from autopeft.train.job import TrialJob
from tests.cli import one_line_error
from tests.conftest import tiny_recipe_dict

runner = CliRunner()
BASE = 1_000_000
FMAX = 6
QV = ["query", "value"]

LORA_1_2 = {"1": [{"method": "lora", "r": 4, "alpha": 8, "roles": QV}],
            "2": [{"method": "lora", "r": 4, "alpha": 8, "roles": QV}]}
LORA_ALL = {str(i): [{"method": "lora", "r": 8, "alpha": 16, "roles": QV}] for i in range(3)}
SERIAL = {"2": [{"method": "serial_adapter", "size": 8}]}
LORA_R2 = {"0": [{"method": "lora", "r": 2, "roles": QV}]}

#: number -> (plan, status, fidelity of its last result, score, trainable params). Front: 2, 1, 0.
TRIALS: dict[int, tuple[dict[str, Any], TrialStatus, int | None, float, int]] = {
    0: (LORA_1_2, TrialStatus.COMPLETE, FMAX, 0.80, 2_000),
    1: (LORA_ALL, TrialStatus.COMPLETE, FMAX, 0.85, 6_000),
    2: (SERIAL, TrialStatus.COMPLETE, FMAX, 0.90, 20_000),
    3: (LORA_R2, TrialStatus.COMPLETE, FMAX, 0.70, 9_000),  # dominated by 0
    4: (LORA_R2, TrialStatus.PRUNED, 2, 0.60, 1_000),
    5: (LORA_R2, TrialStatus.RUNNING, None, 0.0, 0),
}


def _config(plan: dict[str, Any]) -> dict[str, Any]:
    return TrialConfig.model_validate({"plan": plan, "learning_rate": 5e-3}).model_dump(mode="json",
                                                                                         exclude_none=True)


def _fake_metrics(score: float, params: int, fidelity: int) -> dict[str, Any]:
    return {"status": "complete", "fidelity": fidelity, "fidelity_unit": "steps", "steps": fidelity, "score": score,
            "metrics": {"accuracy": score}, "trainable_params": params, "trainable_share": params / BASE,
            "train_seconds": 1.5 + params / 10_000, "examples_per_second": 100.0, "peak_memory_mb": 300.0}


def build_study(url: str, recipe_dir: Path, model_dir: Path, name: str = "demo") -> Store:
    store = Store(url)
    definition = StudyDefinition(space={}, recipe=tiny_recipe_dict(model_dir, fmax=FMAX, threads=1),
                                 objectives=make_objectives(["score", "trainable_params"], base_params=BASE),
                                 recipe_dir=str(recipe_dir))
    store.create_study(name, space=definition.space_json(), recipe=definition.recipe_json(),
                       objectives=definition.objectives_json())
    for _number, (plan, status, fidelity, score, params) in sorted(TRIALS.items()):
        trial = store.create_trial(name, {"plan": "fake"}, _config(plan))
        store.set_trial_status(trial.id, TrialStatus.RUNNING)
        if fidelity is not None:
            store.record_result(trial.id, fidelity, {"score": score, "trainable_params": params},
                                _fake_metrics(score, params, fidelity))
        if status is not TrialStatus.RUNNING:
            store.set_trial_status(trial.id, status)
    return store


@pytest.fixture
def study(store_url: str, tmp_path: Path, tiny_model_dir: Path) -> str:
    """A study `demo` on SQLite and (when reachable) PostgreSQL; returns the store URL."""
    build_study(store_url, tmp_path, tiny_model_dir).close()
    return store_url


@pytest.fixture
def sqlite_study(tmp_path: Path, tiny_model_dir: Path) -> str:
    url = f"sqlite:///{tmp_path / 'autopeft.db'}"
    build_study(url, tmp_path, tiny_model_dir).close()
    return url


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    return one_line_error(result.stderr)


# -- pareto --------------------------------------------------------------------------------------------


def test_pareto_json_is_the_front_best_score_first(study: str) -> None:
    result = runner.invoke(app, ["pareto", "demo", "--storage", study, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["trial"] for r in rows] == [2, 1, 0]
    assert all(r["on_front"] for r in rows)
    assert rows[1]["plan"] == "L0-2 lora r8 qv" and rows[2]["plan"] == "L1-2 lora r4 qv"
    assert rows[0]["plan"] == "L2 serial 8"
    assert rows[0]["score"] == 0.9 and rows[0]["trainable_params"] == 20_000
    assert rows[0]["share_pct"] == pytest.approx(2.0) and rows[0]["learning_rate"] == 5e-3


def test_pareto_all_csv_marks_the_front(study: str) -> None:
    result = runner.invoke(app, ["pareto", "demo", "--storage", study, "--format", "csv", "--all"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["trial"], r["on_front"]) for r in rows] == [("2", "True"), ("1", "True"), ("0", "True"),
                                                             ("3", "False")]
    assert result.stdout.splitlines()[0].startswith("trial,on_front,score,trainable_params,share_pct")


def test_pareto_table_has_the_hypervolume(sqlite_study: str) -> None:
    result = runner.invoke(app, ["pareto", "demo", "--storage", sqlite_study], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "hypervolume" in out and "3 on the front of 4 trials" in out
    assert out.index("L2 serial 8") < out.index("L0-2 lora r8 qv") < out.index("L1-2 lora r4 qv")
    assert "0.200%" in out and "20,000" in out and "L0 lora r2 qv" not in out
    everything = runner.invoke(app, ["pareto", "demo", "--storage", sqlite_study, "--all"], env={"COLUMNS": "200"})
    assert "L0 lora r2 qv" in everything.stdout and "front" in everything.stdout


def test_pareto_empty_front(tmp_path: Path, tiny_model_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = Store(url)
    store.create_study("empty", recipe={"spec": tiny_recipe_dict(tiny_model_dir), "dir": str(tmp_path)},
                       objectives=StudyDefinition(space={}, recipe={}, recipe_dir=".", objectives=make_objectives(
                           ["score", "trainable_params"], base_params=BASE)).objectives_json())
    result = runner.invoke(app, ["pareto", "empty", "--storage", url])
    assert result.exit_code == 0 and "front is empty" in result.stdout
    as_json = runner.invoke(app, ["pareto", "empty", "--storage", url, "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []


def test_unknown_study_lists_the_studies(sqlite_study: str) -> None:
    line = _one_line_error(runner.invoke(app, ["pareto", "nope", "--storage", sqlite_study]))
    assert "no study named 'nope'" in line and "(studies: demo)" in line


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["pareto", "x", "--storage", f"sqlite:///{tmp_path / 'no.db'}"]))
    assert "no store at" in line and not (tmp_path / "no.db").exists()


# -- export --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "expected"), [
    ([], 2), (["--max-params-pct", "1"], 1), (["--max-params-pct", "0.5"], 0), (["--min-score", "0.82"], 1),
    (["--min-score", "0.5"], 0), (["--trial", "3"], 3),
    # trial 2 (the best) is a serial adapter, which peft cannot load
    (["--peft-only"], 1), (["--peft-only", "--max-params-pct", "0.5"], 0), (["--peft-only", "--min-score", "0.5"], 0),
    (["--peft-only", "--trial", "3"], 3),
])
def test_export_selection(study: str, tmp_path: Path, flags: list[str], expected: int) -> None:
    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", "demo", "--storage", study, "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((out / "autopeft.yaml").read_text())
    assert data["provenance"]["trial"] == expected
    assert data["config"] == _config(TRIALS[expected][0])
    assert "secret" not in data["provenance"]["storage"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-params-pct", "0.1"], "trainable share <= 0.1%; the smallest is trial 0"),
    (["--min-score", "0.95"], "scores >= 0.95; the best is trial 2"),
    (["--trial", "4"], "trial 4 of study 'demo' is pruned"),
    (["--trial", "5"], "trial 5 of study 'demo' is running"),
    (["--trial", "9"], "study 'demo' has no trial 9 (trials 0-5)"),
    (["--trial", "1", "--min-score", "0.5"], "at most one of --trial, --max-params-pct, --min-score"),
    (["--peft-only", "--trial", "2"], "peft cannot load trial 2 of study 'demo': layer 2: serial_adapter has no peft"),
    (["--peft-only", "--min-score", "0.88"], "no trial of study 'demo' that peft can load scores >= 0.88; the best is "
                                              "trial 1"),
])
def test_export_errors_write_nothing(sqlite_study: str, tmp_path: Path, flags: list[str], message: str) -> None:
    out = tmp_path / "exp"
    line = _one_line_error(runner.invoke(app, ["export", "demo", "--storage", sqlite_study, "--out", str(out),
                                               *flags]))
    assert message in line
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]


def test_export_lora_writes_a_peft_config_that_peft_loads(sqlite_study: str, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftConfig

    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", "demo", "--storage", sqlite_study, "--out", str(out), "--trial", "0"])
    assert result.exit_code == 0, result.output
    assert "peft adapter config ->" in result.stdout and "no saved state" in result.stdout
    config = PeftConfig.from_pretrained(str(out / "peft"))
    assert isinstance(config, LoraConfig) and config.r == 4
    assert sorted(config.target_modules) == [f"bert.encoder.layer.{i}.attention.self.{r}" for i in (1, 2) for r in QV]
    assert not (out / "peft" / "adapter_model.safetensors").exists()


def test_export_serial_adapter_says_why_not_peft(sqlite_study: str, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", "demo", "--storage", sqlite_study, "--out", str(out)])  # best: 2
    assert result.exit_code == 0, result.output
    assert "peft cannot express this plan" in result.stdout and "serial_adapter has no peft equivalent" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["autopeft.yaml"]


def test_export_writes_trained_weights_from_the_saved_state(sqlite_study: str, tmp_path: Path,
                                                           tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    store = Store(sqlite_study)
    definition = StudyDefinition.from_record(store.get_study("demo"))
    trial_dir = default_trial_dir(sqlite_study, "demo", 1)
    job = TrialJob(definition.trial_recipe(), TrialConfig.model_validate(_config(LORA_ALL)), trial_dir=trial_dir)
    job.run()
    assert trial_dir == tmp_path / "autopeft_runs" / "demo" / "trial_1" and (trial_dir / "state.pt").is_file()

    out = tmp_path / "exp"
    result = runner.invoke(app, ["export", "demo", "--storage", sqlite_study, "--out", str(out), "--trial", "1"])
    assert result.exit_code == 0, result.output
    assert "adapter config and trained weights" in result.stdout
    written = json.loads((out / "peft" / "adapter_config.json").read_text())
    assert written["modules_to_save"] == ["classifier"]  # not peft's own additions on top
    assert written["base_model_name_or_path"] == str(tiny_model_dir)  # the user's folder, as the recipe names it
    job.session.model.eval()
    batch = {"input_ids": torch.tensor([[101, 2023, 2003, 2204, 102]]), "attention_mask": torch.ones(1, 5).long()}
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    with torch.no_grad():
        ours = job.session.model(**batch).logits
        theirs = PeftModel.from_pretrained(base, out / "peft").eval()(**batch).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_export_over_a_previous_export_but_not_a_foreign_folder(sqlite_study: str, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    args = ["export", "demo", "--storage", sqlite_study, "--out", str(out)]
    assert runner.invoke(app, [*args, "--trial", "0"]).exit_code == 0
    assert (out / "peft").is_dir()
    assert runner.invoke(app, [*args, "--trial", "2"]).exit_code == 0  # serial: the old peft/ must go
    assert sorted(p.name for p in out.iterdir()) == ["autopeft.yaml"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    line = _one_line_error(runner.invoke(app, ["export", "demo", "--storage", sqlite_study, "--out", str(foreign)]))
    assert "is not empty and holds no autopeft.yaml" in line


# -- train ---------------------------------------------------------------------------------------------


def _export(url: str, out: Path, trial: int) -> Path:
    result = runner.invoke(app, ["export", "demo", "--storage", url, "--out", str(out), "--trial", str(trial)])
    assert result.exit_code == 0, result.output
    return out / "autopeft.yaml"


def test_train_lora_end_to_end_loads_in_peft(sqlite_study: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    bundle = _export(sqlite_study, tmp_path / "exp", 0)
    result = runner.invoke(app, ["train", str(bundle)])
    assert result.exit_code == 0, result.output
    trained = tmp_path / "exp" / "trained"
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and 0.0 <= metrics["dev_score"] <= 1.0
    assert metrics["dev_score"] == metrics["dev_metrics"]["accuracy"]
    assert 0.0 <= metrics["validation_score"] <= 1.0 and metrics["steps"] == FMAX
    assert metrics["trainable_params"] > 0 and metrics["train_seconds"] > 0
    assert metrics["adapter"] == {"format": "peft", "path": "peft"} and metrics["search"]["trial"] == 0
    assert f"dev {metrics['dev_score']:.4f}" in result.stdout
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, trained / "peft")
    written = json.loads((trained / "peft" / "adapter_config.json").read_text())
    assert written["modules_to_save"] == ["classifier"] and written["base_model_name_or_path"] == str(tiny_model_dir)
    b_norms = [p.abs().sum().item() for n, p in model.named_parameters() if "lora_B" in n]
    assert len(b_norms) == 4 and all(v > 0 for v in b_norms)  # trained, not the zero init


def test_train_serial_adapter_in_our_format_with_fidelity_and_out(sqlite_study: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    bundle = _export(sqlite_study, tmp_path / "exp", 2)
    out = tmp_path / "final"
    result = runner.invoke(app, ["train", str(bundle), "--out", str(out), "--fidelity", "2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["adapter"]["format"] == "autopeft"
    assert "serial_adapter has no peft equivalent" in metrics["adapter"]["not_peft_because"][0]
    tensors = load_file(str(out / "autopeft_adapter.safetensors"))
    assert any("classifier" in k for k in tensors) and len(tensors) > 2
    assert not (out / "peft").exists()


def test_train_bad_yaml_is_one_line_naming_file_and_field(sqlite_study: str, tmp_path: Path) -> None:
    bundle = _export(sqlite_study, tmp_path / "exp", 0)
    data = yaml.safe_load(bundle.read_text())
    data["config"]["plan"]["1"][0]["r"] = 0
    bundle.write_text(yaml.safe_dump(data))
    line = _one_line_error(runner.invoke(app, ["train", str(bundle)]))
    assert line.startswith(f"error: {bundle}: config.plan.1: ") and "greater than 0" in line
    missing = tmp_path / "none.yaml"
    assert _one_line_error(runner.invoke(app, ["train", str(missing)])) == f"error: {missing}: file not found"
    assert not (tmp_path / "exp" / "trained").exists()
