"""The study store: studies, trials, per-fidelity results and Pareto snapshots in one SQL database.

The store is the single source of truth of a study (DESIGN.md): a study resumes from it after a crash, and
several workers plus the dashboard read and write it at the same time.

Concurrency rules:

- A `Store` is thread-safe: every method opens its own short transaction and returns frozen records, never
  ORM objects, so no session outlives a call. Share one `Store` between threads of a process.
- Each process needs its own `Store` (an engine must not cross `fork`). A `Store` pickles as its URL, so
  passing it to a spawned worker builds a fresh engine there.
- Trial numbers are dense (0, 1, 2, ...) and unique per study even with many writer processes: the number
  is read and written in one transaction that holds a row lock on the study (`SELECT ... FOR UPDATE`) on
  PostgreSQL, and SQLite's database write lock on SQLite (every write transaction starts with
  `BEGIN IMMEDIATE`; reads stay `DEFERRED` and, in WAL mode, never block writers).
- `record_result` is idempotent per (trial, fidelity): the first write wins and later ones return it, so
  a worker may safely retry after losing its connection.
- Finished trials (complete, pruned, failed) never change status again, with one exception: a pruned trial
  (paused at a rung when its study's budget ran out) may be reopened as paused, when the study is resumed
  with a larger budget and its scheduler promotes it.
- One driver per study: the study row holds a lease (`acquire_lease`), renewed by the driver's heartbeat in
  the database's clock. Writes that drive a study take ``lease=`` and check, in the same transaction, that
  the caller still holds it (a fencing token), so a driver that was taken over cannot write one more row.
- Each job of a trial is an attempt (`start_attempt` / `end_attempt`); its worker beats `beat_trial`, and
  `silent_trials` finds running trials whose worker stopped beating.
- ``Store(url, read_only=True)`` only reads (the dashboard): SQLite is opened with ``mode=ro`` (a missing
  file is an error, never a new database), PostgreSQL sessions are ``READ ONLY``, and every write method
  raises `ReadOnlyError` before it touches the database. Its bulk reads (`study_overviews`, `read_study`,
  `study_version`) select plain columns in a few queries, not one per trial.

SQLAlchemy errors become `StoreError` at one place, `Store._session`.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import psutil
from sqlalchemy import (
    case,
    delete,
    func,
    inspect,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from autopeft.status import AttemptOutcome
from autopeft.store.bulk import Bulk, gc_paused, loads_many
from autopeft.store.engine import WRITE_OPTION, make_engine
from autopeft.store.errors import (
    AlreadyExistsError,
    InvalidValueError,
    LeaseHeldError,
    LeaseLostError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
)
from autopeft.store.models import (
    Base,
    ParetoSnapshot,
    Study,
    StudyStatus,
    Trial,
    TrialAttempt,
    TrialResult,
    TrialStatus,
    utcnow,
)
from autopeft.store.records import (
    AttemptRecord,
    Lease,
    ParetoSnapshotRecord,
    ResultRecord,
    StudyContents,
    StudyOverview,
    StudyRecord,
    TrialRecord,
    _utc,
)
from autopeft.store.urls import display_url, hide_secrets

DEFAULT_URL = "sqlite:///autopeft.db"


def _one_line(exc: BaseException, url: str) -> str:
    """The first line of a database error, with the store's password masked should the driver quote it."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return hide_secrets(text.splitlines()[0], url) if text else type(exc).__name__


def _check_objectives(objectives: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in objectives.items():
        number = float(value)
        if not math.isfinite(number):
            raise InvalidValueError(f"objective {name!r} is {value!r}; record a failed trial instead")
        out[str(name)] = number
    return out


class Store:
    """Studies, trials, results and Pareto snapshots behind an SQLAlchemy URL (see the module docstring).

    The schema is created on first use (`create_all`); `autopeft.store.migrations.upgrade` migrates an
    existing database instead. With ``read_only`` the store only reads (see the module docstring): the
    schema must exist already, and every write raises `ReadOnlyError`. With ``pooled=False`` a database
    server's connection is opened for each session and closed after it, not kept: what every trial's
    heartbeat uses, so 128 trials that beat every few seconds do not hold 128 of the server's (by default
    100) connections.
    """

    def __init__(self, url: str = DEFAULT_URL, *, busy_timeout_ms: int = 30_000, read_only: bool = False,
                 pooled: bool = True) -> None:
        self.url = url
        self.read_only = read_only
        self.pooled = pooled
        self._display_url = display_url(url)  # in every message: never the password
        self._busy_timeout_ms = busy_timeout_ms
        try:
            self._engine = make_engine(url, busy_timeout_ms, read_only=read_only, pooled=pooled)
        except (SQLAlchemyError, ValueError) as exc:
            raise StoreError(f"cannot open store {self._display_url!r}: {_one_line(exc, url)}") from exc
        write_engine = self._engine.execution_options(**{WRITE_OPTION: True})
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        self._writer = sessionmaker(write_engine, expire_on_commit=False)
        # Bulk reads of one study see one snapshot: PostgreSQL's default (read committed) gives each
        # statement its own; a SQLite read transaction in WAL mode is a snapshot already.
        snapshot_engine = (self._engine.execution_options(isolation_level="REPEATABLE READ")
                           if self._engine.dialect.name == "postgresql" else self._engine)
        self._snapshot_reader = sessionmaker(snapshot_engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[str, bool, bool]]:
        return (_reopen, (self.url, self.read_only, self.pooled))

    def __repr__(self) -> str:
        return f"Store({self._display_url!r}{', read_only=True' if self.read_only else ''})"

    def close(self) -> None:
        """Close pooled connections (call before `fork`, or when done)."""
        self._engine.dispose()

    # -- schema and sessions ---------------------------------------------------------------------------

    def create_all(self) -> None:
        """Create missing tables (stamped at the newest migration); safe to race with another process."""
        self._refuse_if_read_only()
        try:
            if not set(Base.metadata.tables) <= set(inspect(self._engine).get_table_names()):
                from autopeft.store.migrations import stamp_head  # Alembic only when creating a schema

                # A SQLite writer's transaction (BEGIN IMMEDIATE) waits out another process creating the same
                # schema, then sees its tables; a deferred one failed at once with "database is locked".
                with self._engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
                    if not set(Base.metadata.tables) <= set(inspect(connection).get_table_names()):
                        Base.metadata.create_all(connection)
                        stamp_head(connection)
        except SQLAlchemyError as exc:
            # Another process may have created the tables between our check and our CREATE.
            try:
                existing = set(inspect(self._engine).get_table_names())
            except SQLAlchemyError:
                existing = set()
            if not set(Base.metadata.tables) <= existing:
                raise StoreError(
                    f"cannot create the schema in {self._display_url}: {_one_line(exc, self.url)}") from exc
        self._schema_ready = True

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                if self.read_only:
                    self._check_schema()
                else:
                    self.create_all()

    def _check_schema(self) -> None:
        """A read-only store creates nothing: its tables must be there already."""
        try:
            existing = set(inspect(self._engine).get_table_names())
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {self._display_url!r}: {_one_line(exc, self.url)}") from exc
        if not set(Base.metadata.tables) <= existing:
            raise StoreError(f"{self._display_url} holds no autopeft store (its tables are missing); run a study "
                             "there first")
        self._schema_ready = True

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"store {self._display_url} is open read-only; this write is refused")

    @contextmanager
    def _session(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Session]:
        """One transaction; the only place where SQLAlchemy errors become `StoreError`.

        ``snapshot``: a read whose statements all see the database at one moment (bulk reads of a study).
        """
        if write:
            self._refuse_if_read_only()
        self._ensure_schema()
        factory = self._writer if write else self._snapshot_reader if snapshot else self._reader
        try:
            with factory.begin() as session:
                yield session
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self._display_url}: {type(exc).__name__}: {_one_line(exc, self.url)}") from exc

    def _study_row(self, session: Session, name: str, *, lock: bool = False) -> Study:
        query = select(Study).where(Study.name == name)
        row = session.scalars(query.with_for_update() if lock else query).one_or_none()
        if row is None:
            names = session.scalars(select(Study.name).order_by(Study.name).limit(11)).all()
            listing = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "none"
            raise NotFoundError(f"no study named {name!r} in {self._display_url} (studies: {listing})")
        return row

    def _trial_row(self, session: Session, trial_id: int, *, lock: bool = False) -> Trial:
        row = session.get(Trial, trial_id, with_for_update=lock)
        if row is None:
            raise NotFoundError(f"no trial with id {trial_id} in {self._display_url}")
        return row

    def _fence_trial(self, session: Session, trial: Trial, lease: str | None) -> None:
        if lease is not None:
            _fence(session.get(Study, trial.study_id, with_for_update=True), lease)

    @staticmethod
    def _now(session: Session) -> datetime:
        """The database's clock in UTC: leases and heartbeats are written and judged by this one clock."""
        if session.get_bind().dialect.name == "postgresql":
            value = session.scalar(text("SELECT clock_timestamp()"))
            return value.astimezone(timezone.utc)
        stamp = session.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
        return datetime.fromisoformat(str(stamp)).replace(tzinfo=timezone.utc)

    # -- studies ---------------------------------------------------------------------------------------

    def create_study(self, name: str, *, space: Any = None, recipe: Any = None, objectives: Any = None,
                     strategy: str = "mobo-hyperband", seed: int | None = None,
                     lease: Lease | None = None) -> StudyRecord:
        """Create a study; `AlreadyExistsError` if the name is taken (names identify studies in the CLI).

        With ``lease``, the creating driver holds the study from the start (no other driver can slip in).
        """
        with self._session(write=True) as session:
            taken = f"study {name!r} already exists in {self._display_url}; resume it or pick another name"
            if session.scalar(select(Study.id).where(Study.name == name)) is not None:
                raise AlreadyExistsError(taken)
            row = Study(name=name, space=space or {}, recipe=recipe or {}, objectives=objectives or [],
                        strategy=strategy, seed=seed, status=StudyStatus.RUNNING)
            if lease is not None:
                row.lease_owner, row.lease_host, row.lease_pid = lease.owner, lease.host, lease.pid
                row.lease_heartbeat = self._now(session)
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise AlreadyExistsError(taken) from exc
            return StudyRecord.from_row(row)

    def get_study(self, name: str) -> StudyRecord:
        with self._session() as session:
            return StudyRecord.from_row(self._study_row(session, name))

    def list_studies(self) -> list[StudyRecord]:
        with self._session() as session:
            return [StudyRecord.from_row(r) for r in session.scalars(select(Study).order_by(Study.id))]

    def delete_study(self, name: str) -> None:
        """Delete a study with its trials, results and snapshots (explicitly: SQLite may run without FKs)."""
        with self._session(write=True) as session:
            study_id = self._study_row(session, name, lock=True).id
            trial_ids = select(Trial.id).where(Trial.study_id == study_id).scalar_subquery()
            session.execute(delete(TrialResult).where(TrialResult.trial_id.in_(trial_ids)))
            session.execute(delete(TrialAttempt).where(TrialAttempt.trial_id.in_(trial_ids)))
            session.execute(delete(Trial).where(Trial.study_id == study_id))
            session.execute(delete(ParetoSnapshot).where(ParetoSnapshot.study_id == study_id))
            session.execute(delete(Study).where(Study.id == study_id))

    def set_study_status(self, name: str, status: StudyStatus | str, *, lease: str | None = None) -> StudyRecord:
        with self._session(write=True) as session:
            row = self._study_row(session, name, lock=True)
            _fence(row, lease)
            row.status = StudyStatus(status)
            row.updated_at = utcnow()
            session.flush()
            return StudyRecord.from_row(row)

    def set_study_recipe(self, name: str, recipe: Any, *, lease: str | None = None) -> StudyRecord:
        """Replace the study's recipe (with the options kept in it): a resume with a new budget records it."""
        with self._session(write=True) as session:
            row = self._study_row(session, name, lock=True)
            _fence(row, lease)
            row.recipe = recipe
            row.updated_at = utcnow()
            session.flush()
            return StudyRecord.from_row(row)

    # -- trials ----------------------------------------------------------------------------------------

    def create_trial(self, study: str, config: Any, plan: Any = None, *, bracket: int | None = None,
                     lease: str | None = None) -> TrialRecord:
        """Add a waiting trial numbered max(number) + 1 under the study lock (see the module docstring)."""
        with self._session(write=True) as session:
            study_row = self._study_row(session, study, lock=True)
            _fence(study_row, lease)
            study_id = study_row.id
            number = session.scalar(
                select(func.coalesce(func.max(Trial.number) + 1, 0)).where(Trial.study_id == study_id))
            row = Trial(study_id=study_id, number=int(number or 0), config=config, plan=plan, bracket=bracket,
                        status=TrialStatus.WAITING, created_at=utcnow())
            session.add(row)
            session.flush()
            return TrialRecord.from_row(row)

    def get_trial(self, trial_id: int) -> TrialRecord:
        with self._session() as session:
            return TrialRecord.from_row(self._trial_row(session, trial_id))

    def trials(self, study: str, status: TrialStatus | str | Iterable[TrialStatus | str] | None = None,
               ) -> list[TrialRecord]:
        """The study's trials by number, optionally only those in the given status(es)."""
        wanted: list[TrialStatus] | None = None
        if status is not None:
            items = [status] if isinstance(status, str) else list(status)
            wanted = [TrialStatus(s) for s in items]
        with self._session() as session:
            study_id = self._study_row(session, study).id
            query = select(Trial).where(Trial.study_id == study_id)
            if wanted is not None:
                query = query.where(Trial.status.in_(wanted))
            return [TrialRecord.from_row(r) for r in session.scalars(query.order_by(Trial.number))]

    def trial_counts(self, study: str) -> dict[TrialStatus, int]:
        """How many trials are in each status (every status present, zero included), for progress display."""
        counts = dict.fromkeys(TrialStatus, 0)
        for trial in self.trials(study):
            counts[trial.status] += 1
        return counts

    def set_trial_status(self, trial_id: int, status: TrialStatus | str, *, error: str | None = None,
                         worker: str | None = None, lease: str | None = None) -> TrialRecord:
        """Move a trial; stamps started_at on first run and finished_at on finishing.

        Finished is final, except pruned -> paused: a larger budget reopens a trial an earlier run stopped.
        """
        new = TrialStatus(status)
        with self._session(write=True) as session:
            row = self._trial_row(session, trial_id, lock=True)
            self._fence_trial(session, row, lease)
            old = TrialStatus(row.status)
            reopened = old is TrialStatus.PRUNED and new is TrialStatus.PAUSED
            if old.is_finished and new is not old and not reopened:
                raise InvalidValueError(f"trial {row.number} (id {trial_id}) is {old.value}; it cannot become "
                                        f"{new.value}")
            now = utcnow()
            row.status = new
            if reopened:
                row.finished_at = None
            if new is TrialStatus.RUNNING and row.started_at is None:
                row.started_at = now
            if new.is_finished and row.finished_at is None:
                row.finished_at = now
            if error is not None:
                row.error = error
            if worker is not None:
                row.worker = worker
            session.flush()
            return TrialRecord.from_row(row)

    # -- results ---------------------------------------------------------------------------------------

    def record_result(self, trial_id: int, fidelity: int, objectives: Mapping[str, float],
                      metrics: Mapping[str, Any] | None = None, *, lease: str | None = None) -> ResultRecord:
        """Store the trial's objective values at a fidelity; the first write per (trial, fidelity) wins."""
        values = {"trial_id": trial_id, "fidelity": int(fidelity), "objectives": _check_objectives(objectives),
                  "metrics": dict(metrics or {}), "created_at": utcnow()}
        with self._session(write=True) as session:
            trial = self._trial_row(session, trial_id)
            self._fence_trial(session, trial, lease)
            key = (TrialResult.trial_id == trial_id, TrialResult.fidelity == int(fidelity))
            if session.get_bind().dialect.name == "postgresql":
                session.execute(pg_insert(TrialResult).values(**values)
                                .on_conflict_do_nothing(index_elements=["trial_id", "fidelity"]))
            elif session.scalar(select(TrialResult.id).where(*key)) is None:
                session.add(TrialResult(**values))  # SQLite: safe, this transaction holds the write lock
                session.flush()
            row = session.scalars(select(TrialResult).where(*key)).one()
            return ResultRecord.from_row(row, trial.number)

    def results(self, study: str, *, fidelity: int | None = None) -> list[ResultRecord]:
        """All results of the study by trial number then fidelity (optionally at one fidelity)."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            query = (select(TrialResult, Trial.number).join(Trial, TrialResult.trial_id == Trial.id)
                     .where(Trial.study_id == study_id))
            if fidelity is not None:
                query = query.where(TrialResult.fidelity == int(fidelity))
            rows = session.execute(query.order_by(Trial.number, TrialResult.fidelity)).all()
            return [ResultRecord.from_row(result, number) for result, number in rows]

    # -- Pareto snapshots ------------------------------------------------------------------------------

    def add_pareto_snapshot(self, study: str, trial_ids: Iterable[int], hypervolume: float | None = None, *,
                            lease: str | None = None) -> ParetoSnapshotRecord:
        """Record the current front (trial ids of this study) and its hypervolume."""
        ids = sorted({int(i) for i in trial_ids})
        with self._session(write=True) as session:
            study_row = self._study_row(session, study, lock=lease is not None)
            _fence(study_row, lease)
            study_id = study_row.id
            if ids:
                found = set(session.scalars(select(Trial.id).where(Trial.study_id == study_id, Trial.id.in_(ids))))
                missing = [i for i in ids if i not in found]
                if missing:
                    raise InvalidValueError(f"trial ids {missing} are not trials of study {study!r}")
            row = ParetoSnapshot(study_id=study_id, trial_ids=ids, created_at=utcnow(),
                                 hypervolume=None if hypervolume is None else float(hypervolume))
            session.add(row)
            session.flush()
            return ParetoSnapshotRecord.from_row(row)

    def latest_pareto_snapshot(self, study: str) -> ParetoSnapshotRecord | None:
        with self._session() as session:
            study_id = self._study_row(session, study).id
            row = session.scalars(select(ParetoSnapshot).where(ParetoSnapshot.study_id == study_id)
                                  .order_by(ParetoSnapshot.id.desc()).limit(1)).one_or_none()
            return None if row is None else ParetoSnapshotRecord.from_row(row)

    def pareto_snapshots(self, study: str) -> list[ParetoSnapshotRecord]:
        """Every Pareto snapshot of the study, oldest first (the hypervolume history)."""
        with self._session() as session:
            return self._snapshots(session, self._study_row(session, study).id)

    @staticmethod
    def _snapshots(session: Session, study_id: int) -> list[ParetoSnapshotRecord]:
        bulk = Bulk(session)
        rows = bulk.rows(select(ParetoSnapshot.id, bulk.json(ParetoSnapshot.trial_ids), ParetoSnapshot.hypervolume,
                                bulk.when(ParetoSnapshot.created_at))
                         .where(ParetoSnapshot.study_id == study_id).order_by(ParetoSnapshot.id))
        ids, created = loads_many(r[1] for r in rows), bulk.times(r[3] for r in rows)
        return [ParetoSnapshotRecord(id=r[0], study_id=study_id, trial_ids=tuple(ids[k] or ()), hypervolume=r[2],
                                     created_at=created[k]) for k, r in enumerate(rows)]

    # -- bulk reads: the dashboard's pages, a few queries whatever the number of trials ------------------

    def study_overviews(self, *, best_of: str = "score") -> list[StudyOverview]:
        """Every study (by id) with its trial counts, budget reached, best ``best_of`` and latest hypervolume.

        Five aggregate queries in one transaction, whatever the number of studies and trials.
        """
        with self._session(snapshot=True) as session:
            studies = [StudyRecord.from_row(r) for r in session.scalars(select(Study).order_by(Study.id))]
            counts: dict[int, dict[TrialStatus, int]] = {s.id: dict.fromkeys(TrialStatus, 0) for s in studies}
            latest: dict[int, list[datetime]] = {s.id: [s.updated_at] for s in studies}
            for study_id, status, n, *times in session.execute(
                    select(Trial.study_id, Trial.status, func.count(), func.max(Trial.created_at),
                           func.max(Trial.started_at), func.max(Trial.finished_at))
                    .group_by(Trial.study_id, Trial.status)):
                counts[study_id][TrialStatus(status)] = int(n)
                latest[study_id].extend(_utc(t) or t for t in times if t is not None)
            per_trial = (select(Trial.study_id.label("study_id"), func.max(TrialResult.fidelity).label("reached"),
                                func.max(TrialResult.created_at).label("last"))
                         .join(Trial, TrialResult.trial_id == Trial.id)
                         .group_by(Trial.study_id, TrialResult.trial_id).subquery())
            reached: dict[int, int] = {}
            for study_id, total, last in session.execute(
                    select(per_trial.c.study_id, func.sum(per_trial.c.reached), func.max(per_trial.c.last))
                    .group_by(per_trial.c.study_id)):
                reached[study_id] = int(total or 0)
                if last is not None:
                    latest[study_id].append(_utc(last) or last)
            best: dict[int, dict[int, float]] = {s.id: {} for s in studies}
            for study_id, fidelity, value in session.execute(
                    select(Trial.study_id, TrialResult.fidelity, func.max(TrialResult.objectives[best_of].as_float()))
                    .join(Trial, TrialResult.trial_id == Trial.id).where(Trial.status == TrialStatus.COMPLETE)
                    .group_by(Trial.study_id, TrialResult.fidelity)):
                if value is not None:
                    best[study_id][int(fidelity)] = float(value)
            newest = select(func.max(ParetoSnapshot.id)).group_by(ParetoSnapshot.study_id)
            volumes = dict(session.execute(select(ParetoSnapshot.study_id, ParetoSnapshot.hypervolume)
                                           .where(ParetoSnapshot.id.in_(newest))).tuples().all())
            return [StudyOverview(study=s, counts=counts[s.id], reached=reached.get(s.id, 0), best=best[s.id],
                                  hypervolume=volumes.get(s.id), last_activity=max(latest[s.id]))
                    for s in studies]

    def study_version(self, study: str) -> tuple[Any, ...]:
        """A few aggregates that change whenever the study does (a new trial, attempt, result, snapshot, a
        status, a driver's heartbeat): what a reader caches `read_study` by. Cheap: five small queries."""
        with self._session(snapshot=True) as session:
            return self._version(session, study)

    def _version(self, session: Session, study: str) -> tuple[Any, ...]:
        row = session.execute(select(Study.id, Study.status, Study.updated_at, Study.lease_owner,
                                     Study.lease_heartbeat).where(Study.name == study)).one_or_none()
        if row is None:
            self._study_row(session, study)  # raises NotFoundError with the studies there are
        assert row is not None
        study_id = row[0]
        trials = session.execute(
            select(func.count(), func.max(Trial.id), func.max(Trial.started_at), func.max(Trial.finished_at),
                   func.count(Trial.worker), *(func.sum(case((Trial.status == s, 1), else_=0)) for s in TrialStatus))
            .where(Trial.study_id == study_id)).one()
        trial_ids = select(Trial.id).where(Trial.study_id == study_id).scalar_subquery()
        attempts = session.execute(select(func.max(TrialAttempt.id), func.max(TrialAttempt.ended_at),
                                          func.count(TrialAttempt.ended_at))
                                   .where(TrialAttempt.trial_id.in_(trial_ids))).one()
        result = session.scalar(select(func.max(TrialResult.id)).where(TrialResult.trial_id.in_(trial_ids)))
        snapshot = session.scalar(select(func.max(ParetoSnapshot.id)).where(ParetoSnapshot.study_id == study_id))
        values = (*row, *trials, *attempts, result, snapshot)
        return tuple(_plain(v) for v in values)

    def read_study(self, study: str, *, metrics_at: int | None = None, open_attempts_only: bool = False
                   ) -> StudyContents:
        """Everything stored about the study (trials, results, attempts, snapshots), read in one transaction
        with its `study_version` from that same transaction.

        Built for 10,000 trials: one query per table, Core rows of plain columns (no ORM objects), JSON read
        as text and decoded in one call per column, SQLite's timestamps parsed without SQLAlchemy's regex.
        A page that needs less reads less: with ``metrics_at`` only the results at that fidelity carry their
        metrics (the others ``{}``: the metrics are two thirds of a large study's bytes), and with
        ``open_attempts_only`` only the attempts still running come back.
        """
        with gc_paused(), self._session(snapshot=True) as session:
            record = StudyRecord.from_row(self._study_row(session, study))
            version = self._version(session, study)
            bulk = Bulk(session)
            # Enum columns come back as members already (SQLAlchemy's Enum type), so no conversion below.
            rows = bulk.rows(select(Trial.id, Trial.number, bulk.json(Trial.config), bulk.json(Trial.plan),
                                    Trial.status, Trial.error, Trial.worker, Trial.bracket, bulk.when(Trial.created_at),
                                    bulk.when(Trial.started_at), bulk.when(Trial.finished_at),
                                    bulk.when(Trial.heartbeat_at))
                             .where(Trial.study_id == record.id).order_by(Trial.number))
            configs, plans = loads_many(r[2] for r in rows), loads_many(r[3] for r in rows)
            times = [bulk.times(r[k] for r in rows) for k in (8, 9, 10, 11)]
            trials = tuple(
                TrialRecord(id=r[0], study_id=record.id, number=r[1], config=configs[k], plan=plans[k],
                            status=r[4], error=r[5], worker=r[6], bracket=r[7],
                            created_at=times[0][k], started_at=times[1][k], finished_at=times[2][k],
                            heartbeat_at=times[3][k])
                for k, r in enumerate(rows))
            metrics_column = bulk.json(TrialResult.metrics)
            if metrics_at is not None:
                metrics_column = case((TrialResult.fidelity == int(metrics_at), metrics_column), else_=None)
            rows = bulk.rows(select(TrialResult.id, TrialResult.trial_id, Trial.number, TrialResult.fidelity,
                                    bulk.json(TrialResult.objectives), metrics_column,
                                    bulk.when(TrialResult.created_at))
                             .join(Trial, TrialResult.trial_id == Trial.id).where(Trial.study_id == record.id)
                             .order_by(Trial.number, TrialResult.fidelity))
            objectives, metrics = loads_many(r[4] for r in rows), loads_many(r[5] for r in rows)
            created = bulk.times(r[6] for r in rows)
            results = tuple(
                ResultRecord(id=r[0], trial_id=r[1], trial_number=r[2], fidelity=r[3], objectives=objectives[k],
                             metrics=metrics[k] or {}, created_at=created[k])
                for k, r in enumerate(rows))
            rows = bulk.rows(select(TrialAttempt.id, TrialAttempt.trial_id, Trial.number, TrialAttempt.number,
                                    TrialAttempt.fidelity, TrialAttempt.resume_from, TrialAttempt.driver,
                                    TrialAttempt.worker, TrialAttempt.outcome, TrialAttempt.error,
                                    bulk.when(TrialAttempt.started_at), bulk.when(TrialAttempt.ended_at))
                             .join(Trial, TrialAttempt.trial_id == Trial.id).where(Trial.study_id == record.id)
                             .where(TrialAttempt.ended_at.is_(None) if open_attempts_only else true())
                             .order_by(Trial.number, TrialAttempt.number))
            started, ended = bulk.times(r[10] for r in rows), bulk.times(r[11] for r in rows)
            attempts = tuple(
                AttemptRecord(id=r[0], trial_id=r[1], trial_number=r[2], number=r[3], fidelity=r[4],
                              resume_from=r[5], driver=r[6], worker=r[7], outcome=r[8], error=r[9],
                              started_at=started[k], ended_at=ended[k])
                for k, r in enumerate(rows))
            snapshots = tuple(self._snapshots(session, record.id))
            return StudyContents(study=record, trials=trials, results=results, attempts=attempts,
                                 snapshots=snapshots, version=version)

    # -- leases: one driver per study ------------------------------------------------------------------

    def acquire_lease(self, study: str, lease: Lease, *, ttl: float, force: bool = False) -> StudyRecord:
        """Make ``lease`` the study's driver; `LeaseHeldError` while another driver's lease is fresh.

        A lease is stale when its heartbeat is older than ``ttl`` seconds in the database's clock, or when
        its holder ran on this host and its process is gone (a crash is taken over at once). ``force``
        takes a fresh lease too: the old driver notices at its next heartbeat or write, and stops.
        """
        with self._session(write=True) as session:
            row = self._study_row(session, study, lock=True)
            now = self._now(session)
            if row.lease_owner not in (None, lease.owner) and not force:
                beat = _utc(row.lease_heartbeat)
                age = math.inf if beat is None else (now - beat).total_seconds()
                if age < ttl and not _holder_is_gone(row.lease_host, row.lease_pid):
                    raise LeaseHeldError(
                        f"study {study!r} is being run by {row.lease_host}:{row.lease_pid} (heartbeat {age:.0f} s "
                        f"ago); wait for it, stop it, or pass --force if that process is gone")
            row.lease_owner, row.lease_host, row.lease_pid = lease.owner, lease.host, lease.pid
            row.lease_heartbeat = now
            session.flush()
            return StudyRecord.from_row(row)

    def renew_lease(self, study: str, owner: str) -> bool:
        """The driver's heartbeat; False when another driver took the study over (then stop at once)."""
        with self._session(write=True) as session:
            row = self._study_row(session, study, lock=True)
            if row.lease_owner != owner:
                return False
            row.lease_heartbeat = self._now(session)
            return True

    def release_lease(self, study: str, owner: str) -> None:
        """Give the study up (a clean stop); a lease held by another driver is left alone."""
        with self._session(write=True) as session:
            row = self._study_row(session, study, lock=True)
            if row.lease_owner == owner:
                row.lease_owner = row.lease_host = row.lease_pid = row.lease_heartbeat = None

    # -- attempts and heartbeats -----------------------------------------------------------------------

    def start_attempt(self, trial_id: int, fidelity: int, *, resume_from: int | None = None,
                      lease: str | None = None) -> AttemptRecord:
        """A new job of the trial: the trial becomes running, with a fresh heartbeat, in one transaction."""
        with self._session(write=True) as session:
            trial = self._trial_row(session, trial_id, lock=True)
            self._fence_trial(session, trial, lease)
            if TrialStatus(trial.status).is_finished:
                raise InvalidValueError(f"trial {trial.number} (id {trial_id}) is {trial.status.value}; it cannot run")
            count = session.scalar(select(func.count()).where(TrialAttempt.trial_id == trial_id)) or 0
            now = utcnow()
            row = TrialAttempt(trial_id=trial_id, number=int(count) + 1, fidelity=int(fidelity),
                               resume_from=resume_from, driver=lease, outcome=AttemptOutcome.RUNNING, started_at=now)
            session.add(row)
            trial.status = TrialStatus.RUNNING
            trial.started_at = trial.started_at or now
            trial.heartbeat_at = self._now(session)
            session.flush()
            return AttemptRecord.from_row(row, trial.number)

    def end_attempt(self, attempt_id: int, outcome: AttemptOutcome | str, *, error: str | None = None,
                    worker: str | None = None, lease: str | None = None) -> None:
        """Close a running attempt with how it ended (an attempt already closed is left as it is)."""
        with self._session(write=True) as session:
            trial_id = session.scalar(select(TrialAttempt.trial_id).where(TrialAttempt.id == attempt_id))
            if trial_id is None:
                raise NotFoundError(f"no attempt with id {attempt_id} in {self._display_url}")
            # The study's lock before the attempt's, the order `close_open_attempts` takes them in: the
            # other order deadlocks a driver taken over here with the new driver closing its attempts.
            self._fence_trial(session, self._trial_row(session, trial_id), lease)
            row = session.get(TrialAttempt, attempt_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no attempt with id {attempt_id} in {self._display_url}")
            if row.outcome is not AttemptOutcome.RUNNING:
                return
            row.outcome, row.ended_at = AttemptOutcome(outcome), utcnow()
            row.error = error if error is not None else row.error
            row.worker = worker or row.worker

    def close_open_attempts(self, study: str, outcome: AttemptOutcome | str, *, error: str | None = None,
                            lease: str | None = None) -> int:
        """Close every attempt of the study still marked running (a driver that stopped left them open)."""
        with self._session(write=True) as session:
            study_row = self._study_row(session, study, lock=True)
            _fence(study_row, lease)
            trial_ids = select(Trial.id).where(Trial.study_id == study_row.id).scalar_subquery()
            rows = session.scalars(select(TrialAttempt).where(TrialAttempt.trial_id.in_(trial_ids),
                                                              TrialAttempt.outcome == AttemptOutcome.RUNNING)).all()
            for row in rows:
                row.outcome, row.ended_at, row.error = AttemptOutcome(outcome), utcnow(), error
            return len(rows)

    def beat_trial(self, trial_id: int, attempt_id: int, worker: str) -> bool:
        """A worker's sign of life for its job; False once that attempt was closed (the job was given up)."""
        with self._session(write=True) as session:
            attempt = session.get(TrialAttempt, attempt_id)
            if attempt is None or attempt.trial_id != trial_id or attempt.outcome is not AttemptOutcome.RUNNING:
                return False
            trial = self._trial_row(session, trial_id)
            trial.heartbeat_at = self._now(session)
            attempt.worker = trial.worker = worker
            return True

    def silent_trials(self, study: str, grace: float) -> list[TrialRecord]:
        """Running trials whose last heartbeat is older than ``grace`` seconds (database clock)."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            now = self._now(session)
            rows = session.scalars(select(Trial).where(Trial.study_id == study_id,
                                                       Trial.status == TrialStatus.RUNNING)).all()
            return [TrialRecord.from_row(r) for r in rows
                    if r.heartbeat_at is not None and (now - (_utc(r.heartbeat_at) or now)).total_seconds() > grace]

    def attempts(self, study: str) -> list[AttemptRecord]:
        """Every attempt of every trial of the study, by trial number then attempt number."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            rows = session.execute(select(TrialAttempt, Trial.number).join(Trial, TrialAttempt.trial_id == Trial.id)
                                   .where(Trial.study_id == study_id)
                                   .order_by(Trial.number, TrialAttempt.number)).all()
            return [AttemptRecord.from_row(row, number) for row, number in rows]


def _fence(study: Study | None, lease: str | None) -> None:
    """Refuse a driver's write once its lease is gone (checked inside the writing transaction)."""
    if lease is None or study is None or study.lease_owner == lease:
        return
    holder = "no driver" if study.lease_owner is None else f"{study.lease_host}:{study.lease_pid}"
    raise LeaseLostError(f"study {study.name!r} was taken over by {holder}; this driver stopped")


def _plain(value: Any) -> Any:
    """A version component as a plain, comparable value (UTC datetimes, enum values)."""
    if isinstance(value, datetime):
        return _utc(value)
    return value.value if isinstance(value, StudyStatus) else value


def _reopen(url: str, read_only: bool, pooled: bool = True) -> Store:
    """How a `Store` unpickles: a fresh engine for the same URL, as read-only and pooled as the original."""
    return Store(url, read_only=read_only, pooled=pooled)


def _holder_is_gone(host: str | None, pid: int | None) -> bool:
    """A lease holder that ran on this machine and whose process no longer exists (a crashed driver)."""
    return host == socket.gethostname() and pid is not None and not psutil.pid_exists(pid)
