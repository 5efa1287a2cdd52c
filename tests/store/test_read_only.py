"""A read-only store (what the dashboard opens): it reads everything, refuses every write, and changes nothing,
on SQLite (``mode=ro``) and PostgreSQL (read-only sessions)."""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from autopeft.status import AttemptOutcome
from autopeft.store import Lease, ReadOnlyError, Store, StoreError, StudyContents, TrialStatus
from tests.store_fixtures import pg_schema


def _fill(url: str) -> dict[str, int]:
    store = Store(url)
    store.create_study("s", recipe={"spec": {"fidelity": {"min": 1, "max": 3}}})
    trial = store.create_trial("s", {"x": 1}, {"plan": {}})
    attempt = store.start_attempt(trial.id, 3)
    store.record_result(trial.id, 3, {"score": 0.5}, {"m": 1})
    store.end_attempt(attempt.id, AttemptOutcome.REPORTED)
    store.set_trial_status(trial.id, TrialStatus.COMPLETE)
    store.add_pareto_snapshot("s", [trial.id], 0.25)
    running = store.create_trial("s", {"x": 2})
    open_attempt = store.start_attempt(running.id, 1)
    store.close()
    return {"trial": trial.id, "running": running.id, "attempt": open_attempt.id}


def _everything(store: Store) -> tuple[Any, ...]:
    contents: StudyContents = store.read_study("s")
    return (store.list_studies(), contents.trials, contents.results, contents.attempts, contents.snapshots)


def _writes(ids: dict[str, int]) -> dict[str, Callable[[Store], Any]]:
    lease = Lease.for_this_process()
    return {
        "create_all": lambda s: s.create_all(),
        "create_study": lambda s: s.create_study("t"),
        "delete_study": lambda s: s.delete_study("s"),
        "set_study_status": lambda s: s.set_study_status("s", "paused"),
        "set_study_recipe": lambda s: s.set_study_recipe("s", {"options": {"budget": 9}}),
        "create_trial": lambda s: s.create_trial("s", {"x": 3}),
        "set_trial_status": lambda s: s.set_trial_status(ids["running"], TrialStatus.FAILED, error="no"),
        "record_result": lambda s: s.record_result(ids["running"], 1, {"score": 0.1}),
        "add_pareto_snapshot": lambda s: s.add_pareto_snapshot("s", [], None),
        "acquire_lease": lambda s: s.acquire_lease("s", lease, ttl=30),
        "renew_lease": lambda s: s.renew_lease("s", lease.owner),
        "release_lease": lambda s: s.release_lease("s", lease.owner),
        "start_attempt": lambda s: s.start_attempt(ids["running"], 3),
        "end_attempt": lambda s: s.end_attempt(ids["attempt"], AttemptOutcome.LOST),
        "close_open_attempts": lambda s: s.close_open_attempts("s", AttemptOutcome.INTERRUPTED),
        "beat_trial": lambda s: s.beat_trial(ids["running"], ids["attempt"], "w"),
    }


def test_every_write_is_refused_and_nothing_changes(store_url: str) -> None:
    ids = _fill(store_url)
    writer = Store(store_url)
    before = _everything(writer)
    reader = Store(store_url, read_only=True)
    assert _everything(reader) == before  # it reads what the writer wrote
    for name, write in _writes(ids).items():
        with pytest.raises(ReadOnlyError, match="read-only"):
            write(reader)
        assert isinstance(ReadOnlyError("x"), StoreError), name
    assert _everything(writer) == before
    reader.close()
    writer.close()


def test_the_database_itself_refuses_a_write_on_a_read_only_connection(store_url: str) -> None:
    """Past the store's own check (its engine used directly), SQLite's mode=ro or PostgreSQL's READ ONLY refuses."""
    _fill(store_url)
    reader = Store(store_url, read_only=True)
    reader.get_study("s")
    engine = reader._engine  # what the database would do if a write slipped through
    for statement in ("UPDATE studies SET name = 'x'", "DELETE FROM trial_results", "CREATE TABLE t (x INTEGER)"):
        with pytest.raises(SQLAlchemyError, match=r"(?i)read-?only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert reader.get_study("s").name == "s" and len(reader.read_study("s").results) == 1
    reader.close()


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(StoreError, match="no store at"):
        Store(f"sqlite:///{path}", read_only=True)
    assert not path.exists()
    with pytest.raises(StoreError, match="read-only"):
        Store("sqlite://", read_only=True)


def test_a_database_without_the_tables_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    reader = Store(f"sqlite:///{path}", read_only=True)
    with pytest.raises(StoreError, match="no autopeft store"):
        reader.list_studies()
    with pg_schema() as (user, schema):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        with pytest.raises(StoreError, match="no autopeft store"):
            Store(url, read_only=True).list_studies()


def test_a_store_in_rollback_journal_mode_opens_read_only(tmp_path: Path) -> None:
    """The WAL pragma is a write: a read-only connection must not try it (the writers set WAL)."""
    path = tmp_path / "delete mode #1.db"  # a name that needs quoting in a file: URI
    _fill(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    reader = Store(f"sqlite:///{path}", read_only=True)
    assert [s.name for s in reader.list_studies()] == ["s"]
    assert reader.pareto_snapshots("s")[0].hypervolume == 0.25


def test_a_read_only_store_pickles_read_only(store_url: str) -> None:
    _fill(store_url)
    reader = pickle.loads(pickle.dumps(Store(store_url, read_only=True)))
    assert reader.read_only and "read_only=True" in repr(reader)
    with pytest.raises(ReadOnlyError):
        reader.create_study("t")
