"""Alembic migrations of the store schema, run from Python (no alembic.ini needed).

`upgrade(url)` brings any database to the newest schema; `Store.create_all` stamps the databases it creates
at the newest revision, so a later `upgrade` starts from the right place.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import SQLAlchemyError

from autopeft.store.errors import StoreError

_HERE = Path(__file__).resolve().parent


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config pointing at this folder; `connection` (if given) is used instead of the URL."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (the newest by default)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(url, connection), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate {url!r}: {type(exc).__name__}: {exc.args[0] if exc.args else exc}") from exc
    finally:
        engine.dispose()


def stamp_head(connection: Connection) -> None:
    """Record that a schema made by `create_all` is at the newest revision."""
    command.stamp(alembic_config(connection=connection), "head")
