"""`store.engine.make_engine`: what every SQLite connection is set to, and how a read-only store opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from autopeft.store.engine import WRITE_OPTION, make_engine
from autopeft.store.errors import StoreError


def test_sqlite_connections_use_wal_foreign_keys_and_the_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}", 1234)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
    engine.dispose()


def test_a_writing_transaction_takes_the_write_lock_when_it_begins(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE: another writer is locked out before the transaction has written anything."""
    path = tmp_path / "w.db"
    engine = make_engine(f"sqlite:///{path}", 1000)
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        conn.execute(text("SELECT 1"))  # a read only: a DEFERRED transaction would hold no lock yet
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    with engine.connect() as conn, conn.begin():  # a reader's DEFERRED transaction takes no lock
        conn.execute(text("SELECT 1"))
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()
    engine.dispose()


def test_a_read_only_sqlite_store_must_exist_and_cannot_write(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match=r"no store at .*missing\.db"):
        make_engine(f"sqlite:///{missing}", 1000, read_only=True)
    assert not missing.exists()  # SQLite would have created it
    with pytest.raises(StoreError, match="give a database file"):
        make_engine("sqlite://", 1000, read_only=True)

    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x INTEGER)").connection.close()
    engine = make_engine(f"sqlite:///{path}", 1000, read_only=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
        with pytest.raises(Exception, match="readonly"):
            conn.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()


def test_only_sqlite_and_postgresql_open_read_only() -> None:
    with pytest.raises(StoreError, match="only SQLite and PostgreSQL stores can be"):
        make_engine("mysql+pymysql://u@127.0.0.1/db", 1000, read_only=True)
