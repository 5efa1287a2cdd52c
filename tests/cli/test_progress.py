"""What `trial run`, `train` and `study run` show while they work, when stderr is not a terminal (CliRunner's
is not): periodic plain progress lines, the growing front as lines, tables not cut at 80 columns, and no
library `FutureWarning` in `export` or `train` output."""

from __future__ import annotations

import importlib
import io
import re
import warnings
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.cli.app import PIPE_WIDTH, BarProgress, LineProgress, training_progress
from autopeft.train.tasks.types import TaskData
from tests.cli.test_results import build_study
from tests.cli.test_study import TINY_SPACE
from tests.conftest import TINY_PLAN, tiny_recipe_dict

runner = CliRunner()
app_module = importlib.import_module("autopeft.cli.app")  # `autopeft.cli.app` is also the Typer app's name
LINE = re.compile(r"^training: step (\d+)/(\d+) \((\d+)%\) · [\d.]+ examples/s · loss [\d.]+ · \S+ (left|in all)$")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_lines_come_every_tenth_of_the_run() -> None:
    out, clock = io.StringIO(), Clock()
    progress = LineProgress(Console(file=out, width=80), now=clock)
    progress.begin(100, 0, 8)
    for step in range(1, 101):
        clock.now += 0.1
        progress.step(step, 0.5)
    progress.end()
    lines = _lines(out)
    assert lines[0] == "training: 100 steps to go of 100, batch 8"
    steps = [int(LINE.match(line).group(1)) for line in lines[1:]]  # type: ignore[union-attr]
    assert steps == list(range(10, 101, 10))
    assert "80.0 examples/s" in lines[1] and "9s left" in lines[1] and lines[-1].endswith("10s in all")


def test_lines_come_every_30_seconds_on_a_slow_run() -> None:
    out, clock = io.StringIO(), Clock()
    progress = LineProgress(Console(file=out, width=80), now=clock)
    progress.begin(1000, 0, 4)
    for step in range(1, 31):  # 3% of the run, 10 s a step
        clock.now += 10.0
        progress.step(step, None)
    # "training: step 3/1000 ...": the step is the third word's numerator (no loss, so LINE does not apply).
    assert [int(line.split()[2].split("/")[0]) for line in _lines(out)[1:]] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_a_resumed_run_counts_from_where_it_was() -> None:
    out, clock = io.StringIO(), Clock()
    progress = LineProgress(Console(file=out, width=80), now=clock)
    progress.begin(10, 5, 2)
    for step in range(6, 11):
        clock.now += 1.0
        progress.step(step, 0.25)
    lines = _lines(out)
    assert lines[0] == "training: 5 steps to go of 10, batch 2"
    assert [line.split()[2] for line in lines[1:]] == ["6/10", "7/10", "8/10", "9/10", "10/10"]
    assert "2.0 examples/s" in lines[-1]  # the 5 steps of this run, not the 10 of the trial


def test_the_bar_on_a_terminal_shows_rate_loss_and_time_left() -> None:
    out = io.StringIO()
    bar = BarProgress(Console(file=out, force_terminal=True, width=120))
    bar.begin(4, 0, 8)
    bar.step(1, 0.6931)
    bar._bar.refresh()  # drawn now, not at rich's next tick
    bar.end()
    drawn = out.getvalue()
    assert "1/4" in drawn and "examples/s" in drawn and "loss 0.6931" in drawn and "left" in drawn


def test_the_cli_picks_lines_off_a_terminal_and_nothing_for_json() -> None:
    with training_progress() as progress:
        assert isinstance(progress, LineProgress)  # pytest's stderr is not a terminal
    with training_progress(False) as progress:
        assert progress is None


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: Path) -> dict[str, Path]:
    paths = {"recipe": tmp_path / "recipe.yaml", "config": tmp_path / "c.yaml", "space": tmp_path / "space.yaml"}
    paths["recipe"].write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=4, threads=1)),
                               encoding="utf-8")
    paths["config"].write_text(yaml.safe_dump({"plan": TINY_PLAN, "learning_rate": 5e-3}), encoding="utf-8")
    paths["space"].write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    return paths


def test_trial_run_prints_progress_lines_on_stderr(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["trial", "run", "--trial", str(files["recipe"]), "--config", str(files["config"])])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if LINE.match(line)]
    assert [line.split()[2] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]  # 4 steps: every one is 10%+
    assert "trial result" in result.stdout and "training:" not in result.stdout


def test_trial_run_json_shows_no_progress(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["trial", "run", "--trial", str(files["recipe"]), "--config", str(files["config"]),
                                 "--json", "--fidelity", "2"])
    assert result.exit_code == 0, result.output
    assert "training:" not in result.output


def test_export_and_train_show_progress_and_no_future_warning(tmp_path: Path, tiny_model_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'autopeft.db'}"
    build_study(url, tmp_path, tiny_model_dir).close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what a user's Python shows, without pytest's capture
        exported = runner.invoke(app, ["export", "demo", "--storage", url, "--out", str(tmp_path / "exp"),
                                       "--trial", "0"])
        trained = runner.invoke(app, ["train", str(tmp_path / "exp" / "autopeft.yaml"), "--fidelity", "4"])
    assert exported.exit_code == 0 and trained.exit_code == 0, exported.output + trained.output
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert "FutureWarning" not in exported.output + trained.output
    assert [line.split()[2] for line in trained.stderr.splitlines() if LINE.match(line)] == ["1/4", "2/4", "3/4",
                                                                                            "4/4"]


def test_library_future_warnings_show_with_verbose() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.invoke(app, ["-v", "study", "list", "--storage", "sqlite:///nowhere/x.db"])
        warnings.warn_explicit("renamed", FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
        runner.invoke(app, ["study", "list", "--storage", "sqlite:///nowhere/x.db"])
        warnings.warn_explicit("renamed", FutureWarning, "modeling_utils.py", 1, module="transformers.modeling_utils")
        warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="autopeft.x")
    assert [str(w.message) for w in caught] == ["renamed", "ours"]


def test_study_run_to_a_pipe_prints_the_front_as_lines(files: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The tiny model learns nothing (its trials score at chance, so no front): measure from 0 here instead.
    monkeypatch.setattr(TaskData, "chance", property(lambda self: 0.0))
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["study", "run", "--space", str(files["space"]), "--trial", str(files["recipe"]),
                                 "--name", "p", "--storage", url, "--strategy", "random", "--budget", "2",
                                 "--executor", "inprocess"])
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    fronts = [i for i, line in enumerate(err) if line.startswith("front: ")]
    assert fronts, result.stderr
    assert re.match(r"^  trial \d+: score [\d.]+, trainable_params [\d,]+, share [\d.]+%", err[fronts[0] + 1])
    summary = [line for line in result.stdout.splitlines() if line.startswith("study p: complete")]
    assert summary and summary[0].rstrip().endswith(" s")  # one line, not wrapped at 80 columns


def test_tables_off_a_terminal_are_not_cut_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    monkeypatch.setattr(app_module, "console", Console(file=out))
    app_module._fit_consoles()
    table = Table("trial", "plan")
    table.add_row("7", "L0-5 lora r8 q,v + parallel_adapter 32 + prefix 8; L6-11 ia3 k,v,d " * 2)
    app_module.console.print(table)
    assert app_module.console.width == PIPE_WIDTH
    assert max(len(line) for line in _lines(out)) > 120 and len(_lines(out)) == 5
