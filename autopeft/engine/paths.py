"""Where a study keeps trial checkpoints: one rule, shared by the engine, `export` and `study delete`.

A runs folder is a local path, or a URI (`s3://bucket/runs`) that `train.storage` reads and writes.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from autopeft.train.storage import Location, join

RUNS_DIR = "autopeft_runs"


def runs_dir_for(store_url: str) -> Path:
    """`autopeft_runs/` beside a SQLite file (so a study and its checkpoints travel together), else in the cwd."""
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).expanduser().resolve().parent / RUNS_DIR
    return Path.cwd().resolve() / RUNS_DIR


def trial_dir_for(runs_dir: Location, study: str, number: int) -> Location:
    """``runs_dir/study/trial_N``: a `Path` under a local runs folder, a URI under a URI."""
    return join(runs_dir, study, f"trial_{number}")
