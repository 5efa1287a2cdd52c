"""benchmarks/real_studies.py: its --quick run end to end (two real studies through the CLI, each front
exported and trained), and a second run that finds both done and trains nothing again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.real_studies import front_hypervolume

ROOT = Path(__file__).resolve().parents[2]


def _quick(tmp_path: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/real_studies.py"), "--quick", "--folder",
                           str(tmp_path / "studies"), "--out", str(tmp_path / "rs.json"), *extra],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report: dict[str, Any] = json.loads((tmp_path / "rs_quick.json").read_text())
    return report


@pytest.mark.slow
def test_real_studies_quick(tmp_path: Path) -> None:
    report = _quick(tmp_path, "--jobs", "2")  # both studies at once, on one store, a thread each
    assert report["quick"] is True and report["budget_full_trials"] == 2 and report["seeds"] == 1
    assert report["jobs"] == 2 and report["threads_per_trial"] >= 1
    assert [run["method"] for run in report["runs"]] == ["mobo-hyperband", "optuna-tpe"]  # in order, not by end
    runs = {run["method"]: run for run in report["runs"]}
    assert set(runs) == {"mobo-hyperband", "optuna-tpe"}
    assert runs["optuna-tpe"]["strategy"] == "tpe"
    for run in runs.values():
        front = [e for e in run["front"] if e["on_front"]]
        assert front and 0 < run["front_hypervolume"] <= 1
        exported = run["exported"]  # the best score of the front, trained again and scored on dev
        assert exported["search"]["study"] == run["study"]
        assert exported["validation_score"] == max(e["score"] for e in front)
        assert 0 <= exported["dev_score"] <= 1
        assert exported["trainable_params"] in {e["trainable_params"] for e in front}
    # ours proposes the space's defaults first; the peer does not (--no-defaults)
    assert any((e.get("origin") or "").startswith("default") for e in runs["mobo-hyperband"]["front"])
    assert not any(e.get("origin") for e in runs["optuna-tpe"]["front"])
    metrics = tmp_path / "studies" / f"{runs['optuna-tpe']['study']}-trained" / "metrics.json"
    trained = metrics.stat().st_mtime
    again = _quick(tmp_path)  # resumable: both studies are complete and trained already (one at a time now)
    assert metrics.stat().st_mtime == trained
    assert [r["front"] for r in again["runs"]] == [r["front"] for r in report["runs"]]


def test_max_minutes_starts_no_study_after_the_limit(tmp_path: Path) -> None:
    report = _quick(tmp_path, "--max-minutes", "0")
    assert report["runs"] == []
    assert not (tmp_path / "studies" / "studies.db").exists()  # no study was started


def test_front_hypervolume_is_the_blackbox_measure() -> None:
    entries = [{"score": 0.75, "trainable_params": 50}, {"score": 0.5, "trainable_params": 10},
               {"score": 0.6, "trainable_params": 80}]  # the last is dominated
    # from (0.5, 100): the first point covers 0.25 x 50; the second adds nothing (score at chance)
    assert front_hypervolume(entries, 0.5, 100) == pytest.approx(0.25 * 50 / (0.5 * 100))
    assert front_hypervolume([], 0.5, 100) == 0.0
