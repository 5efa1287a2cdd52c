"""`--threads` and `--device` on `trial run`, `train` and `study run`, checked by what `torch.get_num_threads()`
was inside the trial (every result records it); and Ctrl-C: exit code 130, a study paused, not 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.engine import worker
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.store import Store, StudyStatus, TrialStatus
from autopeft.train.resources import default_threads
from tests.cli.test_results import build_study
from tests.cli.test_study import TINY_SPACE
from tests.conftest import TINY_PLAN, default_sigint, tiny_recipe_dict

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: Path) -> dict[str, Path]:
    """A recipe without `training.threads` (the default decides), a configuration and a space."""
    paths = {"recipe": tmp_path / "recipe.yaml", "pinned": tmp_path / "pinned.yaml", "config": tmp_path / "c.yaml",
             "space": tmp_path / "space.yaml"}
    paths["recipe"].write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=4)), encoding="utf-8")
    paths["pinned"].write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=4, threads=2)),
                               encoding="utf-8")
    paths["config"].write_text(yaml.safe_dump({"plan": TINY_PLAN, "learning_rate": 5e-3}), encoding="utf-8")
    paths["space"].write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    return paths


def _trial_run(files: dict[str, Path], recipe: str, *options: str) -> dict[str, Any]:
    result = runner.invoke(app, ["trial", "run", "--trial", str(files[recipe]), "--config", str(files["config"]),
                                 "--fidelity", "2", "--json", *options])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_trial_run_takes_every_allowed_core_by_default(files: dict[str, Path]) -> None:
    assert _trial_run(files, "recipe")["threads"] == default_threads()


def test_trial_run_threads_override_the_recipe(files: dict[str, Path]) -> None:
    assert _trial_run(files, "pinned")["threads"] == 2
    result = _trial_run(files, "pinned", "--threads", "1", "--device", "cpu")
    assert result["threads"] == 1 and result["device"] == "cpu"


def test_train_threads_and_device(tmp_path: Path, tiny_model_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'autopeft.db'}"
    build_study(url, tmp_path, tiny_model_dir).close()  # its recipe says threads: 1
    exported = runner.invoke(app, ["export", "demo", "--storage", url, "--out", str(tmp_path / "exp"), "--trial", "0"])
    assert exported.exit_code == 0, exported.output
    result = runner.invoke(app, ["train", str(tmp_path / "exp" / "autopeft.yaml"), "--fidelity", "2",
                                 "--threads", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "exp" / "trained" / "metrics.json").read_text())
    assert (metrics["steps"], metrics["threads"], metrics["device"]) == (2, 2, "cpu")


def test_study_run_workers_split_the_cores(files: dict[str, Path], tmp_path: Path) -> None:
    """Two worker processes: each trial trains with cores // 2 threads (at least 1), the pool's default."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["study", "run", "--space", str(files["space"]), "--trial", str(files["recipe"]),
                                 "--name", "w", "--storage", url, "--strategy", "random", "--budget", "2",
                                 "--workers", "2", "-q"])
    assert result.exit_code == 0, result.output
    results = Store(url).results("w")
    assert results and {r.metrics["threads"] for r in results} == {default_threads(2)}


def test_study_run_threads_option_applies_to_every_trial(files: dict[str, Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["study", "run", "--space", str(files["space"]), "--trial", str(files["pinned"]),
                                 "--name", "t", "--storage", url, "--strategy", "random", "--budget", "1",
                                 "--executor", "inprocess", "--threads", "1", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    results = Store(url).results("t")
    assert results and {(r.metrics["threads"], r.metrics["device"]) for r in results} == {(1, "cpu")}


# -- Ctrl-C ------------------------------------------------------------------------------------------------


class CtrlC:
    """A runner that trains normally, then is interrupted (as Ctrl-C would) on its ``at``-th job."""

    def __init__(self, real: Any, at: int) -> None:
        self.real, self.at, self.calls = real, at, 0

    def __call__(self, task: TrialTask) -> TrialOutcome:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        outcome: TrialOutcome = self.real(task)
        return outcome


def test_an_interrupted_study_exits_130_and_resumes(files: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setattr(worker, "run_trial", CtrlC(worker.run_trial, at=2))
    result = runner.invoke(app, ["study", "run", "--space", str(files["space"]), "--trial", str(files["pinned"]),
                                 "--name", "c", "--storage", url, "--strategy", "random", "--budget", "3",
                                 "--executor", "inprocess", "-q"])
    assert result.exit_code == 130, result.output
    assert "study c: paused" in result.stdout and "resume with: autopeft study resume c" in result.stdout
    store = Store(url)
    assert store.get_study("c").status is StudyStatus.PAUSED
    assert store.trials("c", status=TrialStatus.WAITING)  # the interrupted job waits for the resume

    monkeypatch.setattr(worker, "run_trial", CtrlC(worker.run_trial.real, at=1))  # type: ignore[attr-defined]
    again = runner.invoke(app, ["study", "resume", "c", "--storage", url, "--executor", "inprocess", "-q"])
    assert again.exit_code == 130, again.output
    monkeypatch.undo()
    done = runner.invoke(app, ["study", "resume", "c", "--storage", url, "--executor", "inprocess", "-q"])
    assert done.exit_code == 0, done.output
    assert Store(url).get_study("c").status is StudyStatus.COMPLETE


def test_ctrl_c_in_any_command_exits_130(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from autopeft.train.job import TrialJob

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(TrialJob, "run", interrupted)
    result = runner.invoke(app, ["trial", "run", "--trial", str(files["recipe"]), "--config", str(files["config"])])
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "group"), [
    ("SIGINT", True),   # a terminal's Ctrl-C: the pool's workers get it too
    ("SIGTERM", False),  # Kubernetes, systemd: the driver alone
    ("SIGTERM", True),  # Slurm's scancel: every process of the job
], ids=["ctrl-c", "sigterm", "sigterm-group"])
def test_ctrl_c_or_sigterm_on_a_running_study_pauses_it_and_exits_130(tmp_path: Path, tiny_model_dir: Path,
                                                                      signum: str, group: bool) -> None:
    """A real signal to the driver while a trial trains: the study is paused (not left to look crashed) and
    its running trial goes back to waiting, to run again on resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2000, fmax=2000, threads=1)),
                      encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 's.db'}"
    driver = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "study", "run", "--space", str(space), "--trial",
                               str(recipe), "--name", "i", "--storage", url, "--strategy", "random", "--budget", "2",
                               "-q"], cwd=tmp_path, start_new_session=True, preexec_fn=default_sigint,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "s.db").exists() or not _running_attempt(url):
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[1].decode()
            time.sleep(0.5)
        time.sleep(1.0)  # inside the trial's training
        (os.killpg if group else os.kill)(driver.pid, getattr(signal, signum))
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, err.decode()
    assert "study i: paused" in out.decode() and "resume with: autopeft study resume i" in out.decode()
    store = Store(url)
    assert store.get_study("i").status is StudyStatus.PAUSED
    assert store.get_study("i").lease_owner is None  # released: a resume needs no --force and no wait
    assert [t.status for t in store.trials("i")] == [TrialStatus.WAITING]
    assert [a.outcome for a in store.attempts("i")] == ["interrupted"]


def _running_attempt(url: str) -> bool:
    # Read-only, as a watcher is: a writable Store would create the schema itself, racing the driver's own.
    store = Store(url, read_only=True)
    try:
        return any(a.worker for a in store.attempts("i"))
    except Exception:  # the study row is not written yet
        return False
    finally:
        store.close()
