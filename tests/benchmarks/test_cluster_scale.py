"""benchmarks/cluster_scale.py --quick: a study on a local Ray cluster (8 logical GPUs) and PostgreSQL, end to end.

Skips where Ray is not installed or PostgreSQL is not reachable (the benchmark needs both). About 30 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.store_fixtures import PG_DB, PG_HOST, PG_PORT, _pg_user

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_scale_quick(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'autopeft[ray]')")
    user, reason = _pg_user()
    if user is None:
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {reason}")
    url = f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/cluster_scale.py"), "--quick", "--storage", url,
                           "--out", str(tmp_path / "c.json")], capture_output=True, text=True, timeout=170,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "c_quick.json").read_text())
    assert report["quick"] is True and report["machine"]["cores"] and report["loop_commit"]
    (row,) = report["rows"]
    assert (row["gpus"], row["strategy"], row["trial_seconds"]) == (8, "hyperband", 2.0)
    assert row["status"] == "complete" and "broke" not in row
    assert row["jobs"] > row["gpus"]  # more than one wave: results came back and freed GPUs got new work
    assert row["results"] == row["jobs"]  # every job reported (none lost, none failed)
    assert 0 <= row["idle_share"] < 1 and 0 <= row["idle_share_runner"] < 1
    assert row["driver_ms_per_trial"]["n"] >= 1 and row["driver_ms_per_trial"]["median"] > 0
    assert row["store_trials_per_s"] > 0 and row["store_capacity_trials_per_s"] > 0
    assert row["workers_started"] == 8 and row["cluster_rss_peak_mb"] > 0
