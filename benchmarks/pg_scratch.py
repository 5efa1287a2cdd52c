"""What the dashboard benchmarks share: a throwaway PostgreSQL schema, a reachability check, the machine.

A module of its own because `dashboard_load.py` (ours) and `dashboard_peer.py` (optuna-dashboard) must
measure on the same server and describe the same machine the same way.
"""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from machine_info import cpu_model  # benchmarks/, the folder of the scripts that import this module


def pg_reachable(url: str) -> tuple[bool, str]:
    """Whether the PostgreSQL server of ``url`` answers, and its version (or why not, in one line)."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        with psycopg.connect(host=parsed.host, port=parsed.port or 5432, dbname=parsed.database,
                             user=parsed.username, connect_timeout=2) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        return True, str(version[0] if version else "")
    except Exception as exc:
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextmanager
def pg_schema(url: str, prefix: str, *, keep: str | None = None) -> Iterator[str]:
    """A throwaway schema ``prefix_<random>`` on the server of ``url``: yields the URL that uses it, and
    drops the schema afterwards, whatever happened. With ``keep``, the schema of that name instead, created
    if missing and kept afterwards (a large fill reused by later runs)."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    schema = keep or f"{prefix}_{uuid.uuid4().hex[:10]}"
    params: dict[str, Any] = {"host": parsed.host, "port": parsed.port or 5432, "dbname": parsed.database,
                              "user": parsed.username}
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    try:
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        if keep is None:
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def machine() -> dict[str, Any]:
    """The CPU, core count, load when the run started, Python, platform, SQLite and SQLAlchemy versions."""
    import sqlite3

    import sqlalchemy

    return {"cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()], "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__}
