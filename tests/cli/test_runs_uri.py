"""`--runs-dir` as a URI (`file:///...` here, through fsspec as `s3://` would go): a Hyperband study keeps
its checkpoints under the URI, a promoted trial resumes from the state stored there (nothing is kept
locally between jobs), `export` and `study delete` read and remove them there; a bad URI is one line,
exit 2, and nothing written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.store import Store, TrialStatus
from autopeft.train.state import STATE_FILE
from autopeft.train.storage import CACHE_ENV
from tests.cli import one_line_error
from tests.conftest import tiny_recipe_dict

runner = CliRunner()

LORA_SPACE = {
    "name": "tiny",
    "training": {"learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}},
    "searched_layers": "1-2",
    "layers": {"method": {"choices": ["lora"]}, "rank": {"choices": [2, 4]}},
    "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"]}],
}


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str, Path]:
    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=6, threads=1)), encoding="utf-8")
    space.write_text(yaml.safe_dump(LORA_SPACE), encoding="utf-8")
    cache = tmp_path / "node-cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return space, recipe, f"sqlite:///{tmp_path / 'db' / 'studies.db'}", cache


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_study_keeps_its_checkpoints_under_a_uri_and_promotions_resume_from_them(
        files: tuple[Path, Path, str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autopeft.train.session import TrainingSession

    space, recipe, url, cache = files
    (tmp_path / "db").mkdir()
    runs = tmp_path / "shared" / "runs"
    restored: list[int] = []
    original = TrainingSession.restore

    def spy(self: TrainingSession, state: Any) -> None:
        restored.append(state.step)
        original(self, state)

    monkeypatch.setattr(TrainingSession, "restore", spy)
    code, out, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "u",
                          "--storage", url, "--strategy", "hyperband", "--budget", "3", "--executor", "inprocess",
                          "--seed", "3", "--runs-dir", f"file://{runs}")
    assert code == 0, err
    assert "study u: complete" in out

    store = Store(url)
    complete = [t for t in store.trials("u") if t.status is TrialStatus.COMPLETE]
    assert complete
    for result in store.results("u", fidelity=6):
        assert result.metrics["trial_dir"] == f"file://{runs}/u/trial_{result.trial_number}"
        state = torch.load(runs / "u" / f"trial_{result.trial_number}" / STATE_FILE, weights_only=True)
        assert state["step"] == 6  # unit: steps
    for trial in store.trials("u"):  # every trained trial's last state is under the URI, and only there
        assert sorted(p.name for p in (runs / "u" / f"trial_{trial.number}").iterdir()) == [STATE_FILE]
    assert not list(cache.rglob(STATE_FILE)), "each job dropped its local copy"
    assert not (tmp_path / "db" / "autopeft_runs").exists()

    promoted = [a for a in store.attempts("u") if a.resume_from is not None]
    assert promoted, "a hyperband study of 3 full trials promotes some trial from rung 2 to 6"
    for attempt in promoted:
        assert attempt.resume_from == 2 and attempt.fidelity == 6
    # Every promoted job restored the stored step-2 state: nothing local survived the job that saved it.
    assert restored.count(2) == len(promoted)

    out_dir = tmp_path / "best"
    # By number: the tiny model scores at chance, so no trial is on the front to be picked by default.
    number = max(store.results("u", fidelity=6), key=lambda r: r.objectives["score"]).trial_number
    code, stdout, err = _run("export", "u", "--trial", str(number), "--out", str(out_dir), "--storage", url)
    assert code == 0, err
    assert (out_dir / "peft" / "adapter_model.safetensors").is_file(), stdout

    code, _, err = _run("study", "delete", "u", "--storage", url, "--yes", "--runs-dir", f"file://{runs}/")
    assert code == 0, err
    assert not (runs / "u").exists()


def test_trial_run_continues_from_a_uri(files: tuple[Path, Path, str, Path], tmp_path: Path) -> None:
    _, recipe, _, cache = files
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"plan": {"1-2": [{"method": "lora", "r": 2, "roles": ["query"]}]},
                                      "learning_rate": 5e-3}), encoding="utf-8")
    uri = f"file://{tmp_path / 'remote' / 'trial'}"
    code, _, err = _run("trial", "run", "--trial", str(recipe), "--config", str(config), "--fidelity", "2",
                        "--trial-dir", uri, "--json")
    assert code == 0, err
    assert torch.load(tmp_path / "remote" / "trial" / STATE_FILE, weights_only=True)["step"] == 2
    code, out, err = _run("trial", "run", "--trial", str(recipe), "--config", str(config), "--fidelity", "4",
                          "--trial-dir", uri, "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == 4
    assert torch.load(tmp_path / "remote" / "trial" / STATE_FILE, weights_only=True)["step"] == 4
    assert not list(cache.rglob(STATE_FILE))


_NO_S3FS = importlib.util.find_spec("s3fs") is None


@pytest.mark.parametrize(("runs_dir", "expected"), [
    ("nope://bucket/runs", "runs-dir: unknown scheme 'nope'"),
    pytest.param("s3://bucket/runs", "runs-dir: s3:// needs the package s3fs, which is not installed "
                 "(pip install s3fs)", marks=pytest.mark.skipif(not _NO_S3FS, reason="s3fs is installed here")),
    ("file://{file}", "exists and is not a folder"),
])
def test_a_bad_runs_uri_is_one_line_and_writes_nothing(files: tuple[Path, Path, str, Path], tmp_path: Path,
                                                       runs_dir: str, expected: str) -> None:
    space, recipe, url, cache = files
    (tmp_path / "db").mkdir()
    runs_dir = runs_dir.format(file=recipe)
    code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "bad",
                        "--storage", url, "--runs-dir", runs_dir)
    assert code == 2 and expected in one_line_error(err)
    assert not (tmp_path / "db" / "studies.db").exists() and not cache.exists()

    Store(url).create_study("kept")
    for args in (("study", "resume", "kept"), ("study", "delete", "kept", "--yes")):
        code, _, err = _run(*args, "--storage", url, "--runs-dir", runs_dir)
        assert code == 2 and expected in one_line_error(err)
    assert [s.name for s in Store(url).list_studies()] == ["kept"]
