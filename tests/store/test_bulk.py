"""`store.bulk`: the helpers behind the store's reads of many rows."""

from __future__ import annotations

import gc
from datetime import datetime, timezone

from autopeft.store.bulk import gc_paused, loads_many


def test_loads_many_decodes_each_document_and_keeps_none() -> None:
    assert loads_many(['{"a": 1}', None, "[1, 2]", '"x"']) == [{"a": 1}, None, [1, 2], "x"]
    assert loads_many([]) == []


def test_gc_paused_nests_and_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not switch it back on early
    assert gc.isenabled()


def test_gc_paused_restores_the_collector_after_an_error() -> None:
    try:
        with gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_sqlite_timestamps_parse_as_utc() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from autopeft.store.bulk import Bulk

    with Session(create_engine("sqlite://")) as session:
        bulk = Bulk(session)
        assert bulk.sqlite
        assert bulk.times(["2026-12-08 01:02:03.000004", None]) == [
            datetime(2026, 12, 8, 1, 2, 3, 4, tzinfo=timezone.utc), None]
