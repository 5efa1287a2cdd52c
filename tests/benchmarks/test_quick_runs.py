"""The benchmarks' --quick modes (trial throughput, strategies, dashboard load and its peer) run end to end and
write the JSON the README describes; the newer benchmarks have a test module each beside this one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    assert report["quick"] is True and report["sizes"]["trials"] == 200 and report["rounds"] == 3
    assert report["machine"]["optuna_dashboard"] == "0.21.0" and report["notes"]
    measured = {name: figures for name, figures in report["backends"].items() if "skipped" not in figures}
    assert "sqlite" in measured and set(report["summary"]) == set(measured)
    for figures in measured.values():
        # The same study on both sides: 200 trials, 4 reports each on average, a fifth complete.
        shape = figures["shape"]
        assert shape["same"] is True
        assert (shape["ours"]["trials"], shape["ours"]["results"], shape["ours"]["full_fidelity"]) == (200, 797, 38)
        peer = shape["peer"]
        assert peer["trials"] == 200 and peer["intermediate_values"] == 797
        assert peer["states"] == {"COMPLETE": 38, "FAIL": 4, "PRUNED": 155, "RUNNING": 3}
        assert peer["poll_after"] == 197
        # Interleaved rounds: every round times ours and the peer in both settings, first load and reload.
        settings = {"cli", "cached_storage"}
        cases = {"ours_first", "ours_reload"} | {f"peer_{c}.{s}" for c in ("first", "reload") for s in settings}
        assert len(figures["rounds"]) == 3 and all(cases <= set(r) for r in figures["rounds"])
        for case in ("first_load", "reload"):
            both = figures[case]
            assert set(both["peer"]) == set(both["ratio_peer_over_ours"]) == settings
            for timing in (both["ours"], *both["peer"].values()):
                assert 0 < timing["min_s"] <= timing["median_s"] <= timing["max_s"] and timing["runs"] == 3
            for peer in both["peer"].values():
                assert {"meta", "studies", "study_detail", "param_importances"} <= set(peer["requests"])
            # The headline ratio is against the faster setting.
            strongest = both["strongest_peer_setting"]
            assert all(both["peer"][strongest]["median_s"] <= p["median_s"] for p in both["peer"].values())
            assert figures[f"ratio_{case}_peer_over_ours"] == both["ratio_peer_over_ours"][strongest]["median_ratio"]
            assert figures[f"ratio_{case}_peer_over_ours"] > 0
        assert set(figures["first_load"]["ours"]["parts"]) == {"open", "list_studies", "load_study"}
        # The first load sends every trial; the poll only those from the first running one on.
        for setting in settings:
            detail = figures["first_load"]["peer"][setting]["requests"]["study_detail"]["bytes"]
            assert detail > 3 * figures["peer_only"][setting]["poll"]["bytes"] > 0
