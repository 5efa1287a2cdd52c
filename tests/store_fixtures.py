"""The `store_url` fixture: every store-backed test runs on a fresh SQLite file and, when reachable, on PostgreSQL.

PostgreSQL tests each get their own schema (through `search_path` in the URL), dropped afterwards, so
they never see each other's studies or leave tables behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

PG_HOST = os.environ.get("AUTOPEFT_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AUTOPEFT_TEST_PG_PORT", "5432"))
PG_DB = os.environ.get("AUTOPEFT_TEST_PG_DB", "test")


@cache
def _pg_user() -> tuple[str | None, str]:
    """The first user that can connect (trust auth), or None with the reason."""
    try:
        import psycopg
    except ImportError as exc:
        return None, f"psycopg not installed ({exc})"
    reason = ""
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user, connect_timeout=2):
                return user, ""
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None, reason


@contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema, dropped afterwards: yields (user, schema); skips when PG is unreachable."""
    user, reason = _pg_user()
    if user is None:
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {reason}")
    import psycopg

    schema = f"autopeft_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield user, schema
    finally:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with pg_schema() as (user, schema):
        yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}?options=-csearch_path%3D{schema}"
