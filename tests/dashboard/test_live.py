"""A study running in another process while the dashboard reads its store every 0.2-2 s (SQLite): both
finish with no "database is locked", and the reads see the study grow."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from autopeft.dashboard.data import list_studies, load_study, open_read_only, study_version
from autopeft.store import Store, StudyStatus
from tests.dashboard.studies import create

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "autopeft" / "dashboard" / "app.py"


def test_reading_while_a_study_runs_locks_nobody_out(tmp_path: Path, tiny_model_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    writer = Store(url)
    create(writer, "live", tiny_model_dir, tmp_path)
    writer.close()
    study = subprocess.Popen([sys.executable, "-m", "tests.dashboard.studies", url, "live", str(tiny_model_dir),
                              str(tmp_path), "8", "0.08"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    monkeypatch.delenv("AUTOPEFT_DASHBOARD_STUDY", raising=False)
    reader = open_read_only(url)
    versions, results, pages, rng = set(), [], 0, random.Random(0)
    try:
        deadline = time.monotonic() + 240
        while study.poll() is None and time.monotonic() < deadline:
            versions.add(study_version(reader, "live"))
            results.append(len(load_study(reader, "live").results))
            assert [row.name for row in list_studies(reader)] == ["live"]
            if pages < 3:  # the page itself too, as a browser's refresh runs it
                at = AppTest.from_file(str(APP), default_timeout=60)
                at.query_params["study"] = "live"
                at.run()
                assert not at.exception, [e.value for e in at.exception]
                pages += 1
            time.sleep(rng.uniform(0.2, 2.0))
        output, _ = study.communicate(timeout=60)
    finally:
        if study.poll() is None:
            study.kill()
        reader.close()
    assert study.returncode == 0, output
    assert "locked" not in output.lower()
    assert Store(url).get_study("live").status is StudyStatus.COMPLETE
    assert len(versions) >= 2 and results == sorted(results), "the reads saw the study grow"
