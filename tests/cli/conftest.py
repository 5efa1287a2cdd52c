"""`filled`: a store (SQLite, and PostgreSQL when reachable) holding a finished study `hb` run by the real loop."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def filled(store_url: str, tiny_model_dir: Path, tmp_path: Path) -> str:
    """A Hyperband study `hb` of about 27 trials on the synthetic objective, with real plans: complete, pruned
    (stopped at a rung, with their early results) and failed trials; milliseconds per trial."""
    from tests.dashboard.studies import fill

    fill(store_url, "hb", tiny_model_dir, tmp_path, budget=6)
    return store_url
