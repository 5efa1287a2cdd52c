"""The acceptance check: the quickstart command, as a user runs it, on the packaged MiniLM and demo task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 120


@pytest.mark.slow
def test_demo_trial_with_mixed_config() -> None:
    command = [sys.executable, "-c", "from autopeft.cli import main; main()", "trial", "run",
               "--trial", "trials/demo.yaml", "--config", "examples/configs/mixed.yaml", "--json"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=2 * TIME_LIMIT_S)
    elapsed = time.perf_counter() - started

    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["status"] == "complete"
    assert (result["fidelity"], result["steps"]) == (90, 90)
    assert result["score"] > 0.6, f"chance is 0.5; got {result['score']}"
    assert 0 < result["trainable_share"] < 0.01
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.0f} s"
