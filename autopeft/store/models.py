"""SQLAlchemy 2 models of the study store: studies, trials, per-fidelity results and Pareto snapshots.

JSON columns use `JSON` (SQLite) with a `JSONB` variant on PostgreSQL, so the same models and migrations
serve both. Timestamps are timezone-aware UTC; SQLite drops the zone, so readers re-attach UTC.
Statuses are plain strings checked by a constraint (no native enum type to migrate on PostgreSQL).
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from autopeft.status import AttemptOutcome, TrialStatus


class StudyStatus(str, enum.Enum):
    """Lifecycle of a study; `running` until the loop finishes or a user pauses it."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    FAILED = "failed"


JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _status(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A VARCHAR + CHECK column storing the enum's values (not its member names)."""
    return Enum(enum_cls, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda cls: [m.value for m in cls], validate_strings=True)


class Base(DeclarativeBase):
    """Declarative base; its `metadata` is what `create_all` and the Alembic environment use."""


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    space: Mapped[Any] = mapped_column(JSONType)
    recipe: Mapped[Any] = mapped_column(JSONType)
    objectives: Mapped[Any] = mapped_column(JSONType)
    strategy: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[StudyStatus] = mapped_column(_status(StudyStatus, "study_status"), default=StudyStatus.RUNNING)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # The driver that runs the study (one at a time): its id, where it runs, and its last heartbeat in the
    # database's clock (so drivers on machines with skewed clocks agree on what is stale).
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lease_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_trials_study_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    config: Mapped[Any] = mapped_column(JSONType)
    plan: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    status: Mapped[TrialStatus] = mapped_column(_status(TrialStatus, "trial_status"), default=TrialStatus.WAITING)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str | None] = mapped_column(Text, nullable=True)
    bracket: Mapped[int | None] = mapped_column(Integer, nullable=True)  # Hyperband bracket, for resuming
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # database clock


class TrialAttempt(Base):
    """One job of a trial: which worker ran it, from which fidelity to which, and how it ended."""

    __tablename__ = "trial_attempts"
    __table_args__ = (UniqueConstraint("trial_id", "number", name="uq_trial_attempts_trial_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per trial
    fidelity: Mapped[int] = mapped_column(Integer)  # trains to
    resume_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    driver: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[AttemptOutcome] = mapped_column(_status(AttemptOutcome, "attempt_outcome"),
                                                    default=AttemptOutcome.RUNNING)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TrialResult(Base):
    __tablename__ = "trial_results"
    __table_args__ = (UniqueConstraint("trial_id", "fidelity", name="uq_trial_results_trial_fidelity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    fidelity: Mapped[int] = mapped_column(Integer)
    objectives: Mapped[Any] = mapped_column(JSONType)
    metrics: Mapped[Any] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ParetoSnapshot(Base):
    __tablename__ = "pareto_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    trial_ids: Mapped[Any] = mapped_column(JSONType)
    hypervolume: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
