"""Errors raised by the study store.

Every database failure reaches callers as a `StoreError` (converted once, in `Store._session`), so the CLI
can print one line instead of an SQLAlchemy traceback.
"""

from __future__ import annotations

from autopeft.errors import AutopeftError


class StoreError(AutopeftError, RuntimeError):
    """The store could not read or write: unreachable database, broken schema, or a rule below was broken."""


class NotFoundError(StoreError, LookupError):
    """A study or trial named by the caller does not exist."""


class AlreadyExistsError(StoreError):
    """A study with the requested name already exists."""


class InvalidValueError(StoreError, ValueError):
    """A write the store refuses: a finished trial moved to another status, a non-finite objective value,
    a snapshot naming trials of another study."""


class LeaseHeldError(StoreError):
    """Another driver runs the study and its heartbeat is fresh: a second driver must not run it too."""


class LeaseLostError(StoreError):
    """This driver's lease was taken over (`--force` elsewhere): it must stop without writing more."""


class ReadOnlyError(StoreError):
    """A write through a store opened read-only (`Store(url, read_only=True)`, as the dashboard opens it)."""
