"""Fast reads of many rows (a 10,000-trial study): plain columns, JSON decoded in one call, SQLite
timestamps parsed directly, and no cyclic garbage collection while the records are built."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import String, Text, cast, type_coerce
from sqlalchemy.orm import Session

from autopeft.store.records import _utc


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block: building ~10^6 objects in one go otherwise triggers
    collections that traverse them again and again (a third to a half of a 10,000-trial read). The objects
    made here hold no cycles; the collector runs again as usual afterwards. Safe to nest."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def loads_many(texts: Iterable[str | None]) -> list[Any]:
    """Decode many JSON documents in one `json.loads` call (a third of the time of one call each)."""
    return json.loads("[" + ",".join("null" if t is None else t for t in texts) + "]")


class Bulk:
    """Plain-column reads for many rows: Core execution, JSON as text, SQLite timestamps parsed directly."""

    def __init__(self, session: Session) -> None:
        self.connection = session.connection()
        self.sqlite = self.connection.dialect.name == "sqlite"

    def rows(self, statement: Any) -> list[Any]:
        return list(self.connection.execute(statement).all())

    @staticmethod
    def json(column: Any) -> Any:
        """The column's JSON text (decoded later by `loads_many`), not one `json.loads` per value."""
        return cast(column, Text)

    def when(self, column: Any) -> Any:
        """SQLite's timestamp text as stored (SQLAlchemy's per-value regex is the slow part); else the column."""
        return type_coerce(column, String) if self.sqlite else column

    def times(self, values: Iterable[Any]) -> list[Any]:
        """UTC datetimes from what `when` selected (None stays None)."""
        if self.sqlite:  # stored as UTC without an offset; appending it is 7x faster than `.replace(tzinfo=)`
            parse = datetime.fromisoformat
            return [None if v is None else parse(v + "+00:00") for v in values]
        utc = timezone.utc  # what a UTC session returns (see `engine.make_engine`): nothing to convert
        return [v if v is None or v.tzinfo is utc else _utc(v) for v in values]
