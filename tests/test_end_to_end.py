"""The acceptance path, as a user runs it: the quickstart study on the packaged MiniLM and demo task
(a real worker pool), then its front, the export of the best trial, and `autopeft train` on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _autopeft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from autopeft.cli import main; main()", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_quickstart_study_export_and_train(tmp_path: Path) -> None:
    done = _autopeft("study", "run", "--space", str(REPO / "search_spaces/quickstart.yaml"),
                     "--trial", str(REPO / "trials/demo.yaml"), "--name", "qs", "--budget", "3", "--workers", "2",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "autopeft.db").is_file() and "Pareto front of qs" in done.stdout

    done = _autopeft("pareto", "qs", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    front = json.loads(done.stdout)
    assert front, "a budget of 3 full trials brings at least one trial to full fidelity"
    best = max(row["score"] for row in front)
    assert best > 0.6, f"chance is 0.5; the best full-fidelity trial scored {best}"
    assert all(0 < row["share_pct"] < 1 for row in front)

    done = _autopeft("export", "qs", "--out", "best", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = yaml.safe_load((tmp_path / "best/autopeft.yaml").read_text())
    assert exported["provenance"]["study"] == "qs" and exported["config"]["plan"]

    done = _autopeft("train", "best/autopeft.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "best/trained/metrics.json").read_text())
    assert metrics["fidelity"] == 90 and metrics["dev_score"] > 0.6
