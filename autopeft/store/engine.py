"""How a store URL becomes a SQLAlchemy engine: SQLite in WAL mode with transactions that say how they
begin (writers `BEGIN IMMEDIATE`), PostgreSQL sessions in UTC, and both opened read-only on request."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool, StaticPool

from autopeft.store.errors import StoreError
from autopeft.store.urls import display_url

#: The execution option a writing session sets, so SQLite begins its transaction IMMEDIATE.
WRITE_OPTION = "autopeft_write"


def _read_only_sqlite_url(url: str, database: str | None) -> URL:
    """``sqlite:///file:PATH?mode=ro&uri=true`` for an existing file (SQLite would create a missing one)."""
    if database in (None, "", ":memory:") or str(database).startswith("file:"):
        raise StoreError(f"cannot open store {display_url(url)!r} read-only: give a database file, "
                         "e.g. sqlite:///autopeft.db")
    path = Path(os.path.abspath(str(database)))  # as SQLAlchemy resolves a relative path
    if not path.is_file():
        raise StoreError(f"no store at {path} ({display_url(url)}); run a study first or pass --storage")
    return URL.create("sqlite", database="file:" + quote(str(path)), query={"mode": "ro", "uri": "true"})


def make_engine(url: str, busy_timeout_ms: int, *, read_only: bool = False, pooled: bool = True) -> Engine:
    """An engine whose SQLite connections run in WAL mode and let us choose how each transaction begins.

    ``read_only``: SQLite opens the file with ``mode=ro``, PostgreSQL sessions are ``READ ONLY``.
    ``pooled=False``: a server connection is opened per session and closed after it (see `Store`).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        if read_only and backend != "postgresql":  # checked first: nothing is opened for a store refused
            raise StoreError(f"cannot open store {display_url(url)!r} read-only: only SQLite and PostgreSQL "
                             "stores can be")
        engine = (create_engine(url, pool_pre_ping=True) if pooled
                  else create_engine(url, poolclass=NullPool))
        if backend == "postgresql":
            # Sessions in UTC: timestamps come back in `timezone.utc` itself, so reading 10,000 trials converts
            # none of them (a server in another zone would hand out that zone, one conversion per value).
            settings = ["SET TIME ZONE 'UTC'"] + (["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"]
                                                  if read_only else [])

            @event.listens_for(engine, "connect")
            def _session_settings(dbapi_conn: Any, _record: Any) -> None:
                autocommit = dbapi_conn.autocommit
                dbapi_conn.autocommit = True  # plain SETs, outside the transactions SQLAlchemy begins
                cursor = dbapi_conn.cursor()
                for statement in settings:
                    cursor.execute(statement)
                cursor.close()
                dbapi_conn.autocommit = autocommit

        return engine
    in_memory = parsed.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"poolclass": StaticPool} if in_memory else {}
    target: str | URL = _read_only_sqlite_url(url, parsed.database) if read_only else url
    engine = create_engine(target, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite's own BEGIN handling off; `_on_begin` emits ours
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not read_only:  # a read-only connection cannot change the journal mode (the writers set WAL)
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a DEFERRED transaction that upgrades later can fail with
        # "database is locked" without waiting, and two of them could both read the same max(number).
        mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
