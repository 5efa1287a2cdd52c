"""Plain, frozen views of stored rows, so that callers never hold ORM objects or sessions.

A record is a snapshot taken when the store method returned; read again to see later changes.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from autopeft.status import AttemptOutcome
from autopeft.store.models import ParetoSnapshot, Study, StudyStatus, Trial, TrialAttempt, TrialResult, TrialStatus


def _utc(value: datetime | None) -> datetime | None:
    """Everything we store is UTC: SQLite returns naive datetimes, PostgreSQL the session's zone."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Lease:
    """Who drives a study: a fresh id per driver process, with its host and pid for messages and checks."""

    owner: str
    host: str
    pid: int

    @classmethod
    def for_this_process(cls) -> Lease:
        return cls(owner=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


@dataclass(frozen=True)
class StudyRecord:
    id: int
    name: str
    space: Any
    recipe: Any
    objectives: Any
    strategy: str
    seed: int | None
    status: StudyStatus
    created_at: datetime
    updated_at: datetime
    lease_owner: str | None = None  # the driver running the study, if any (see `Store.acquire_lease`)
    lease_host: str | None = None
    lease_pid: int | None = None
    lease_heartbeat: datetime | None = None

    @property
    def lease_holder(self) -> str | None:
        """`host:pid` of the driver holding the lease, for messages."""
        return None if self.lease_owner is None else f"{self.lease_host}:{self.lease_pid}"

    @classmethod
    def from_row(cls, row: Study) -> StudyRecord:
        return cls(id=row.id, name=row.name, space=row.space, recipe=row.recipe, objectives=row.objectives,
                   strategy=row.strategy, seed=row.seed, status=StudyStatus(row.status),
                   created_at=_utc(row.created_at) or row.created_at, updated_at=_utc(row.updated_at) or row.updated_at,
                   lease_owner=row.lease_owner, lease_host=row.lease_host, lease_pid=row.lease_pid,
                   lease_heartbeat=_utc(row.lease_heartbeat))


@dataclass(frozen=True)
class TrialRecord:
    id: int
    study_id: int
    number: int
    config: Any
    plan: Any | None
    status: TrialStatus
    error: str | None
    worker: str | None
    bracket: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = None  # the last sign of life of its running job (database clock)

    @classmethod
    def from_row(cls, row: Trial) -> TrialRecord:
        return cls(id=row.id, study_id=row.study_id, number=row.number, config=row.config, plan=row.plan,
                   status=TrialStatus(row.status), error=row.error, worker=row.worker, bracket=row.bracket,
                   created_at=_utc(row.created_at) or row.created_at, started_at=_utc(row.started_at),
                   finished_at=_utc(row.finished_at), heartbeat_at=_utc(row.heartbeat_at))


@dataclass(frozen=True)
class AttemptRecord:
    """One job of a trial: the worker that ran it, the fidelities, and how it ended."""

    id: int
    trial_id: int
    trial_number: int
    number: int
    fidelity: int
    resume_from: int | None
    driver: str | None
    worker: str | None
    outcome: AttemptOutcome
    error: str | None
    started_at: datetime
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: TrialAttempt, trial_number: int) -> AttemptRecord:
        return cls(id=row.id, trial_id=row.trial_id, trial_number=trial_number, number=row.number,
                   fidelity=row.fidelity, resume_from=row.resume_from, driver=row.driver, worker=row.worker,
                   outcome=AttemptOutcome(row.outcome), error=row.error,
                   started_at=_utc(row.started_at) or row.started_at, ended_at=_utc(row.ended_at))


@dataclass(frozen=True)
class ResultRecord:
    """One trial's objective values (and extra metrics) at one fidelity (a Hyperband rung)."""

    id: int
    trial_id: int
    trial_number: int
    fidelity: int
    objectives: dict[str, float]
    metrics: dict[str, Any]
    created_at: datetime

    @classmethod
    def from_row(cls, row: TrialResult, trial_number: int) -> ResultRecord:
        return cls(id=row.id, trial_id=row.trial_id, trial_number=trial_number, fidelity=row.fidelity,
                   objectives=dict(row.objectives), metrics=dict(row.metrics or {}),
                   created_at=_utc(row.created_at) or row.created_at)


@dataclass(frozen=True)
class ParetoSnapshotRecord:
    """The trials forming the front at one moment (after a completed rung), with its hypervolume."""

    id: int
    study_id: int
    trial_ids: tuple[int, ...]
    hypervolume: float | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: ParetoSnapshot) -> ParetoSnapshotRecord:
        return cls(id=row.id, study_id=row.study_id, trial_ids=tuple(row.trial_ids), hypervolume=row.hypervolume,
                   created_at=_utc(row.created_at) or row.created_at)


@dataclass(frozen=True)
class StudyOverview:
    """One study's line of an overview of the store (`Store.study_overviews`), read with a few aggregates."""

    study: StudyRecord
    counts: dict[TrialStatus, int]  # every status, zero included
    reached: int  # the sum over trials of the highest fidelity each reported (what the budget counts)
    best: dict[int, float]  # fidelity -> the best value of the asked objective among complete trials' results
    hypervolume: float | None  # the latest Pareto snapshot's
    last_activity: datetime  # the latest of the study's update and its trials' and results' times


@dataclass(frozen=True)
class StudyContents:
    """Everything stored about one study, read in one transaction (`Store.read_study`).

    ``version`` is `Store.study_version` read in that same transaction: it changes whenever the study
    does, so a reader caches the contents by it.
    """

    study: StudyRecord
    trials: tuple[TrialRecord, ...]  # by number
    results: tuple[ResultRecord, ...]  # by trial number, then fidelity
    attempts: tuple[AttemptRecord, ...]  # by trial number, then attempt number
    snapshots: tuple[ParetoSnapshotRecord, ...]  # oldest first
    version: tuple[Any, ...]
