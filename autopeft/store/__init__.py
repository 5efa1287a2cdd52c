"""The study store (SQLite by default, PostgreSQL by URL): the single source of truth of every study."""

from autopeft.store.errors import (
    AlreadyExistsError,
    InvalidValueError,
    LeaseHeldError,
    LeaseLostError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
)
from autopeft.store.models import StudyStatus, TrialStatus
from autopeft.store.records import (
    AttemptRecord,
    Lease,
    ParetoSnapshotRecord,
    ResultRecord,
    StudyContents,
    StudyOverview,
    StudyRecord,
    TrialRecord,
)
from autopeft.store.store import DEFAULT_URL, Store
from autopeft.store.urls import display_url, has_password

__all__ = [
    "DEFAULT_URL",
    "AlreadyExistsError",
    "AttemptRecord",
    "InvalidValueError",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "NotFoundError",
    "ParetoSnapshotRecord",
    "ReadOnlyError",
    "ResultRecord",
    "Store",
    "StoreError",
    "StudyContents",
    "StudyOverview",
    "StudyRecord",
    "StudyStatus",
    "TrialRecord",
    "TrialStatus",
    "display_url",
    "has_password",
]
