"""The throughput benchmark's --quick mode runs end to end and writes the JSON the README describes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_trial_throughput_quick(glue_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tt.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/trial_throughput.py"), "--quick", "--data-dir", str(glue_dir),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "tt_quick.json").read_text())
    assert report["quick"] is True and report["matmul_gflops"] > 0
    (case,) = report["cases"]
    assert case["case"] == "a"
    assert case["ours"]["examples_per_s"] > 0 and case["peers"]["peft_grouped"]["examples_per_s"] > 0
    # Both sides train the same adapter on the same data: same trainable count, loss in the same range.
    assert case["ours"]["trainable_params"] == case["peers"]["peft_grouped"]["trainable_params"]
    assert abs(case["ours"]["final_loss"] - case["peers"]["peft_grouped"]["final_loss"]) < 0.1
    assert case["ratio_vs_peft_grouped"] > 0


def test_strategies_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/strategies.py"), "--quick", "--out",
                           str(tmp_path / "s.json")], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "s_quick.json").read_text())
    assert report["quick"] is True and report["reference_hv"] > 0
    rows = {row["strategy"]: row for row in report["strategies"]}
    assert set(rows) == {"random", "hyperband", "tpe"}
    for name, row in rows.items():
        assert 0 < row["hv_share_median"] <= 2, name
        assert row["full_trials_median"] >= 1 and row["ratio_vs_tpe"] > 0
    assert rows["hyperband"]["trials_median"] > rows["random"]["trials_median"]  # early stopping buys trials


def test_dashboard_load_quick(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/dashboard_load.py"), "--quick", "--out",
                           str(tmp_path / "d.json")], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "d_quick.json").read_text())
    assert report["quick"] is True and report["sizes"]["trials"] == 200
    measured = {name: figures for name, figures in report["backends"].items() if "skipped" not in figures}
    assert "sqlite" in measured
    for figures in measured.values():
        view, written = figures["view"], figures["written"]
        assert (view["trials"], view["results"], view["attempts"], view["snapshots"]) == (
            written["trials"], written["results"], written["attempts"], written["snapshots"])
        assert 0 < view["front"] <= view["full_fidelity"] == written["snapshots"]
        for name in ("list_studies", "load_study", "load_study_detail", "study_version"):
            assert figures[name]["median_s"] > 0 and figures[name]["runs"] == 2
            # A few queries per page, never one per trial (the light read asks for the study's recipe first).
            assert figures[name]["statements"] <= 14
        for page in ("study_page", "trial_page"):
            timing = figures["pages"][page]
            assert timing["warm_median_s"] > 0 and timing["cold_median_s"] > 0 and timing["runs"] == 2


def test_dashboard_peer_quick(tmp_path: Path) -> None:
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install -e '.[bench]')")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/dashboard_peer.py"), "--quick", "--out",
                           str(tmp_path / "p.json")], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "p_quick.json").read_text())
    assert report["quick"] is True and report["sizes"]["trials"] == 200
    assert report["machine"]["optuna_dashboard"] == "0.21.0" and report["notes"]
    measured = {name: figures for name, figures in report["backends"].items() if "skipped" not in figures}
    assert "sqlite" in measured
    for figures in measured.values():
        # The study as dashboard_load.py's: 200 trials, 4 reports each on average, a fifth complete.
        study = figures["study"]
        assert study["trials"] == 200 and study["intermediate_values"] == 797
        assert study["states"] == {"COMPLETE": 38, "FAIL": 4, "PRUNED": 155, "RUNNING": 3}
        assert study["poll_after"] == 197
        requests = figures["requests"]
        assert set(requests) == {"meta", "studies", "study_detail", "param_importances", "poll"}
        for f in requests.values():
            assert f["cold_s"] > 0 and f["warm_median_s"] > 0 and f["runs"] == 2
        assert requests["study_detail"]["refetch_median_s"] > 0 and requests["poll"]["refetch_median_s"] > 0
        # The first load sends every trial; the poll only those from the first running one on.
        assert requests["study_detail"]["bytes"] > 3 * requests["poll"]["bytes"] > 0
        assert figures["first_load"]["cold_s"] > 0 and figures["first_load"]["reload_s"] > 0
