"""The Alembic migrations build exactly the schema of the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from autopeft.store import Store
from autopeft.store.migrations import upgrade
from autopeft.store.models import Base


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_matches_models_and_store_uses_it(store_url: str) -> None:
    upgrade(store_url)
    assert _diff(store_url) == []
    store = Store(store_url)
    trial = store.create_trial(store.create_study("m").name, {"rank": 4})
    assert trial.number == 0
    store.close()
    upgrade(store_url)  # already at head: a no-op


def test_create_all_stamps_head_so_upgrade_is_a_no_op(store_url: str) -> None:
    store = Store(store_url)
    store.create_study("c")
    store.close()
    upgrade(store_url)
    engine = create_engine(store_url)
    try:
        assert "alembic_version" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert Store(store_url).get_study("c").name == "c"
