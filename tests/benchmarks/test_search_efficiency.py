"""benchmarks/search_efficiency.py: its --quick run end to end, and the compute ratio read off the curves.

Peers whose package is not installed (Syne Tune, in the `bench` extra) are skipped by the harness, which
says why in the JSON; the test accepts that and checks the rest. About 20 s.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.search_analysis import summarise
from benchmarks.search_problem import Problem

ROOT = Path(__file__).resolve().parents[2]


def _first_reach(events: list[list[float]], target: float) -> float:
    return next((c for c, h, _ in events if h >= target - 1e-12), math.inf)


def _check_section(section: dict[str, Any], budget: float, seeds: int) -> None:
    methods = section["methods"]
    peers = [n for n, row in methods.items() if row["kind"] == "peer"]
    ours = [n for n, row in methods.items() if row["kind"] == "ours"]
    assert section["best_peer"] == max(peers, key=lambda n: methods[n]["final_hv_median"])
    target = section["target_hv"]
    assert target == methods[section["best_peer"]]["final_hv_median"]
    grid = section["grid"]
    assert grid[0] == 0 and math.isclose(grid[-1], budget)
    medians: dict[str, float | None] = {}
    for name, row in methods.items():
        events = section["runs"][name]
        assert len(events) == seeds
        for run in events:  # compute never decreases, hypervolume never falls, nothing past the budget
            assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(run))
            assert run[-1][0] <= budget + 1e-6
        finals = [run[-1][1] for run in events]
        assert math.isclose(row["final_hv_median"], statistics.median(finals))
        assert row["final_hv_q25"] <= row["final_hv_median"] <= row["final_hv_q75"]
        assert math.isclose(row["curve_median"][-1], statistics.median(finals))
        reach = statistics.median(_first_reach(run, target) for run in events)
        medians[name] = None if math.isinf(reach) else reach
        assert row["compute_to_target_median"] == medians[name], name
    reaching = {n: m for n in ours if (m := medians[n]) is not None}
    if reaching:
        best = min(reaching, key=lambda n: reaching[n])
        assert section["best_ours"] == best
        assert math.isclose(section["compute_ratio_vs_best_peer"], reaching[best] / section["best_peer_compute"])
    else:
        assert section["compute_ratio_vs_best_peer"] is None
    assert section["best_peer_compute"] == budget


def test_search_efficiency_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/search_efficiency.py"), "--quick", "--out",
                           str(tmp_path / "se.json")], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "se_quick.json").read_text())
    assert report["quick"] is True and report["seeds"] == 1 and report["budget_full_trials"] == 6
    assert report["machine"]["cores"] and report["versions"]["optuna"]
    requested = {"random", "hyperband", "optuna-tpe", "syne-moasha", "random-search"}
    (section,) = report["problems"]
    assert section["name"] == "synthetic" and section["reference_point"]["score"] == 0.5
    assert set(section["methods"]) | set(report["skipped"]) == requested
    for name, reason in report["skipped"].items():  # only a peer whose package is missing, with the reason
        assert name == "syne-moasha" and "not installed" in reason
    for name, row in section["methods"].items():
        assert 0 < row["final_hv_median"] <= 1, name
        assert row["jobs_median"] >= 1 and row["method_seconds_median"] >= 0
    assert section["methods"]["hyperband"]["jobs_median"] > section["methods"]["random"]["jobs_median"]
    _check_section(section, 6.0, 1)
    if section["figure"] is not None:
        assert (tmp_path / "se_quick_synthetic.png").stat().st_size > 0


def test_ratio_from_curves() -> None:
    """Known curves: the target is the best peer's median final, the ratio our best median first reach / budget."""
    class Toy(Problem):
        """A problem with no space: enough for `summarise`, which reads only its description."""

        name = "toy"
        dims: Mapping[str, Any] = {}
        objectives = ()
        min_fidelity, max_fidelity, eta = 1, 9, 3.0
        report_fidelities = (1, 3, 9)
        score_floor, max_params, full_trial_seconds = 0.5, 100.0, 10.0

        def score(self, config: Mapping[str, Any], fidelity: int, seed: int) -> float:
            return 0.5

        def params(self, config: Mapping[str, Any]) -> int:
            return 1

    rng = random.Random(0)

    def run(points: list[tuple[float, float]]) -> dict[str, Any]:
        events = [[0.0, 0.0, 0.0]] + [[c, h, rng.random()] for c, h in points]
        return {"events": events, "jobs": len(points), "full_trials": len(points), "seconds": events[-1][2]}

    budget = 10.0
    runs = {
        "mobo-hyperband": [run([(2, 0.3), (4, 0.6)]), run([(3, 0.6)]), run([(5, 0.7)])],  # reach 0.6 at 4, 3, 5
        "random": [run([(9, 0.6)]), run([(10, 0.5)]), run([(8, 0.9)])],  # 9, never, 8 -> median 9
        "random-search": [run([(10, 0.6)]), run([(10, 0.6)]), run([(10, 0.5)])],  # final median 0.6
        "optuna-tpe": [run([(10, 0.4)]), run([(10, 0.55)]), run([(10, 0.3)])],
    }
    section = summarise(Toy(), budget, runs, {})
    assert section["best_peer"] == "random-search" and section["target_hv"] == 0.6
    assert section["methods"]["mobo-hyperband"]["compute_to_target_median"] == 4
    assert section["methods"]["random"]["compute_to_target_median"] == 9
    assert section["methods"]["optuna-tpe"]["compute_to_target_median"] is None
    assert section["best_ours"] == "mobo-hyperband"
    assert math.isclose(section["compute_ratio_vs_best_peer"], 0.4)
    assert math.isclose(section["compute_ratio_default_vs_best_peer"], 0.4)
    _check_section(section, budget, 3)
