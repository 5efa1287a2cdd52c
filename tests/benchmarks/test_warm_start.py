"""benchmarks/warm_start.py: its --quick run end to end, and a warm run that really trains the front first."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from benchmarks import search_efficiency as harness
from benchmarks.search_problem import SyntheticProblem
from benchmarks.warm_start import summarise

ROOT = Path(__file__).resolve().parents[2]


def test_warm_start_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/warm_start.py"), "--quick", "--out",
                           str(tmp_path / "ws.json")], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "ws_quick.json").read_text())
    assert report["quick"] is True and report["strategy"] == "mobo-hyperband"
    (section,) = report["directions"]
    assert section["source"] == section["target"] == "synthetic" and section["seeds"] == 1
    (run,) = section["runs"]
    assert run["front"] and 0 < run["source_final_hv"] <= 1
    assert [row["budget"] for row in section["at_budget"]] == [3.0, 6.0]
    final = section["at_budget"][-1]
    assert final["cold"]["median"] == run["cold"]["final_hv"] and final["warm"]["median"] == run["warm"]["final_hv"]


def test_a_warm_run_trains_the_front_first_at_full_fidelity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seeds come before the defaults, each trained once to full fidelity: the first jobs are theirs."""
    problem = SyntheticProblem()
    front = harness.run_ours(problem, "mobo-hyperband", 0, 6.0, keep_front=True)["front"]
    assert front and len({json.dumps(c, sort_keys=True) for c in front}) == len(front)
    jobs: list[tuple[dict[str, Any], int, int]] = []
    evaluate = harness.Tracker.evaluate

    def spy(self: harness.Tracker, config: Mapping[str, Any], start: int, fidelity: int,
            seed: int) -> tuple[float, float]:
        jobs.append((dict(config), start, fidelity))
        return evaluate(self, config, start, fidelity, seed)

    monkeypatch.setattr(harness.Tracker, "evaluate", spy)
    harness.run_ours(problem, "mobo-hyperband", 1, len(front) + 1.0, warm=front)
    first = jobs[:len(front)]
    assert [c for c, _, _ in first] == front  # the front first, in its order
    assert all(start == 0 and fidelity == problem.max_fidelity for _, start, fidelity in first)


def test_summary_counts_the_seeds_where_the_warm_start_is_ahead() -> None:
    runs = [{"seed": s, "front": [{}] * 3, "source_final_hv": 0.5,
             "cold": {"events": [[0, 0, 0], [2, 0.2, 0], [5, 0.4, 0]], "final_hv": 0.4},
             "warm": {"events": [[0, 0, 0], [1, 0.3 + s / 10, 0], [5, 0.35 + s / 10, 0]], "final_hv": 0.35 + s / 10}}
            for s in range(3)]
    summary = summarise(runs, (1.0, 5.0))
    early, late = summary["at_budget"]
    assert early["warm_ahead"] == 3 and early["cold"]["median"] == 0.0
    assert (late["warm_ahead"], late["warm_behind"]) == (2, 1)  # 0.35 < 0.4 < 0.45, 0.55
    assert abs(late["warm"]["median"] - 0.45) < 1e-12 and summary["front_size_median"] == 3
