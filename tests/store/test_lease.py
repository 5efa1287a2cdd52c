"""One driver per study (leases, fenced writes), trial attempts and heartbeats, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import MetaData, create_engine, func, select

from autopeft.status import AttemptOutcome
from autopeft.store import (
    InvalidValueError,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    Store,
    StudyRecord,
    StudyStatus,
    TrialStatus,
)
from autopeft.store.migrations import upgrade
from autopeft.store.models import Base
from tests.store.test_migrations import _diff

TTL = 30.0
SCORE = {"score": 0.5, "params": 10.0}


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _lease(host: str | None = None, pid: int | None = None) -> Lease:
    """A driver id; on this host, with a live pid (ours) unless told otherwise."""
    mine = Lease.for_this_process()
    return Lease(owner=uuid.uuid4().hex, host=host or mine.host, pid=mine.pid if pid is None else pid)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _lease_fields(record: StudyRecord) -> tuple[object, ...]:
    return record.lease_owner, record.lease_host, record.lease_pid, record.lease_heartbeat


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Base.metadata.tables[table])) or 0)
    finally:
        engine.dispose()


# -- leases -------------------------------------------------------------------------------------------


def test_a_held_lease_refuses_a_second_driver_until_forced(store: Store) -> None:
    store.create_study("s")
    a = _lease(host="host-a", pid=4242)  # another machine: only its heartbeat says whether it lives
    b = _lease()
    held = store.acquire_lease("s", a, ttl=TTL)
    assert held.lease_owner == a.owner and held.lease_holder == "host-a:4242"
    assert held.lease_heartbeat is not None and held.lease_heartbeat.tzinfo == timezone.utc
    assert store.acquire_lease("s", a, ttl=TTL).lease_owner == a.owner  # the holder may acquire again

    with pytest.raises(LeaseHeldError, match="host-a:4242") as refused:
        store.acquire_lease("s", b, ttl=TTL)
    assert "\n" not in str(refused.value)
    assert store.get_study("s").lease_owner == a.owner  # a refusal changes nothing

    taken = store.acquire_lease("s", b, ttl=TTL, force=True)
    assert taken.lease_owner == b.owner and taken.lease_holder == str(b)
    assert store.get_study("s").lease_holder == str(b)


def test_renewal_moves_the_heartbeat_and_fails_once_taken_over(store: Store) -> None:
    store.create_study("s")
    a, b = _lease(), _lease()
    first = store.acquire_lease("s", a, ttl=TTL).lease_heartbeat
    time.sleep(0.05)
    assert store.renew_lease("s", a.owner) is True
    second = store.get_study("s").lease_heartbeat
    assert first is not None and second is not None and second > first
    store.acquire_lease("s", b, ttl=TTL, force=True)
    assert store.renew_lease("s", a.owner) is False
    assert store.get_study("s").lease_owner == b.owner  # a failed renewal does not take it back


def test_a_taken_over_driver_cannot_write_anything(store: Store, store_url: str) -> None:
    store.create_study("s")
    a, b = _lease(), _lease()
    store.acquire_lease("s", a, ttl=TTL)
    trial = store.create_trial("s", {"x": 1}, lease=a.owner)
    running = store.create_trial("s", {"x": 2}, lease=a.owner)
    attempt = store.start_attempt(running.id, 3, lease=a.owner)
    taken = store.acquire_lease("s", b, ttl=TTL, force=True)

    writes = {
        "create_trial": lambda: store.create_trial("s", {"x": 3}, lease=a.owner),
        "set_trial_status": lambda: store.set_trial_status(trial.id, TrialStatus.RUNNING, lease=a.owner),
        "record_result": lambda: store.record_result(running.id, 3, SCORE, lease=a.owner),
        "set_study_status": lambda: store.set_study_status("s", StudyStatus.PAUSED, lease=a.owner),
        "set_study_recipe": lambda: store.set_study_recipe("s", {"options": {"budget": 9}}, lease=a.owner),
        "add_pareto_snapshot": lambda: store.add_pareto_snapshot("s", [trial.id], 1.0, lease=a.owner),
        "start_attempt": lambda: store.start_attempt(trial.id, 3, lease=a.owner),
        "end_attempt": lambda: store.end_attempt(attempt.id, AttemptOutcome.REPORTED, lease=a.owner),
        "close_open_attempts": lambda: store.close_open_attempts("s", AttemptOutcome.INTERRUPTED, lease=a.owner),
    }
    for write in writes.values():
        with pytest.raises(LeaseLostError, match=f"taken over by {b.host}:{b.pid}"):
            write()

    # Nothing was written: the rows are as they were when A lost the study.
    assert [(t.number, t.status) for t in store.trials("s")] == [(0, TrialStatus.WAITING), (1, TrialStatus.RUNNING)]
    assert store.results("s") == []
    assert store.latest_pareto_snapshot("s") is None
    got = store.get_study("s")
    assert got.status is StudyStatus.RUNNING and got.updated_at == taken.updated_at and got.lease_owner == b.owner
    assert [(x.number, x.outcome) for x in store.attempts("s")] == [(1, AttemptOutcome.RUNNING)]
    assert _count(store_url, "trials") == 2 and _count(store_url, "trial_results") == 0
    assert _count(store_url, "trial_attempts") == 1 and _count(store_url, "pareto_snapshots") == 0

    # The new holder writes as usual; writes without a lease (tools, tests) are not fenced.
    store.end_attempt(attempt.id, AttemptOutcome.INTERRUPTED, lease=b.owner)
    assert store.record_result(running.id, 3, SCORE, lease=b.owner).fidelity == 3
    assert store.set_trial_status(trial.id, TrialStatus.FAILED, error="x").status is TrialStatus.FAILED
    assert store.create_trial("s", {"x": 3}, lease=b.owner).number == 2


def test_a_stale_heartbeat_is_taken_without_force(store: Store) -> None:
    store.create_study("s")
    a, b = _lease(host="host-a", pid=1), _lease()
    store.acquire_lease("s", a, ttl=1.0)
    with pytest.raises(LeaseHeldError):
        store.acquire_lease("s", b, ttl=1.0)
    time.sleep(1.3)
    with pytest.raises(LeaseHeldError):  # fresh enough for a longer ttl
        store.acquire_lease("s", b, ttl=TTL)
    assert store.acquire_lease("s", b, ttl=1.0).lease_owner == b.owner


def test_a_holder_on_this_host_whose_process_is_gone_is_stale_at_once(store: Store) -> None:
    store.create_study("s")
    store.create_study("t")
    dead = _dead_pid()
    store.acquire_lease("s", _lease(pid=dead), ttl=TTL)
    b = _lease()
    assert store.acquire_lease("s", b, ttl=TTL).lease_owner == b.owner
    # The same pid on another machine says nothing about that machine's process: still held.
    store.acquire_lease("t", _lease(host=f"not-{socket.gethostname()}", pid=dead), ttl=TTL)
    with pytest.raises(LeaseHeldError, match=f"not-{socket.gethostname()}:{dead}"):
        store.acquire_lease("t", b, ttl=TTL)


def test_release_clears_only_the_holders_lease(store: Store) -> None:
    store.create_study("s")
    a, b = _lease(), _lease()
    store.acquire_lease("s", a, ttl=TTL)
    before = store.get_study("s")
    store.release_lease("s", b.owner)  # not the holder: nothing changes
    assert _lease_fields(store.get_study("s")) == _lease_fields(before)
    store.release_lease("s", a.owner)
    released = store.get_study("s")
    assert _lease_fields(released) == (None, None, None, None) and released.lease_holder is None
    store.release_lease("s", a.owner)  # twice is harmless
    assert store.acquire_lease("s", b, ttl=TTL).lease_owner == b.owner  # free for anyone
    store.release_lease("s", b.owner)
    with pytest.raises(LeaseLostError, match="no driver"):  # a released lease fences its old holder
        store.create_trial("s", {}, lease=b.owner)


def test_create_study_with_a_lease_is_held_from_the_start(store: Store) -> None:
    a = _lease(host="host-a", pid=7)
    created = store.create_study("s", lease=a)
    assert created.lease_owner == a.owner and created.lease_holder == "host-a:7"
    assert created.lease_heartbeat is not None
    assert store.get_study("s") == created
    with pytest.raises(LeaseHeldError, match="host-a:7"):
        store.acquire_lease("s", _lease(), ttl=TTL)
    assert store.create_trial("s", {}, lease=a.owner).number == 0
    assert store.create_study("free").lease_owner is None


# -- attempts and heartbeats ---------------------------------------------------------------------------


def test_attempts_are_numbered_per_trial_and_start_running(store: Store) -> None:
    store.create_study("s")
    one, two = store.create_trial("s", {"x": 1}), store.create_trial("s", {"x": 2})
    numbers = []
    for fidelity in (1, 3, 9):
        attempt = store.start_attempt(one.id, fidelity, resume_from=fidelity // 3 or None)
        trial = store.get_trial(one.id)
        assert trial.status is TrialStatus.RUNNING and trial.started_at is not None
        assert trial.heartbeat_at is not None
        assert attempt.outcome is AttemptOutcome.RUNNING and attempt.ended_at is None
        assert (attempt.trial_id, attempt.trial_number, attempt.fidelity) == (one.id, 0, fidelity)
        numbers.append(attempt.number)
        store.end_attempt(attempt.id, AttemptOutcome.LOST, error="worker died")
    assert numbers == [1, 2, 3]
    assert store.start_attempt(two.id, 9).number == 1  # numbering is per trial
    listed = store.attempts("s")
    assert [(a.trial_number, a.number) for a in listed] == [(0, 1), (0, 2), (0, 3), (1, 1)]
    assert [a.resume_from for a in listed] == [None, 1, 3, None]
    assert [a.outcome for a in listed] == [AttemptOutcome.LOST] * 3 + [AttemptOutcome.RUNNING]

    store.set_trial_status(two.id, TrialStatus.COMPLETE)
    with pytest.raises(InvalidValueError):
        store.start_attempt(two.id, 9)  # a finished trial never runs again
    assert len(store.attempts("s")) == 4


def test_end_attempt_is_idempotent_and_stops_heartbeats(store: Store) -> None:
    store.create_study("s")
    trial = store.create_trial("s", {})
    attempt = store.start_attempt(trial.id, 9)
    assert store.beat_trial(trial.id, attempt.id, "w1") is True
    assert store.get_trial(trial.id).worker == "w1"
    assert store.beat_trial(trial.id + 1000, attempt.id, "w1") is False  # not this attempt's trial

    store.end_attempt(attempt.id, AttemptOutcome.REPORTED, worker="w1")
    first = store.attempts("s")[0]
    assert first.outcome is AttemptOutcome.REPORTED and first.ended_at is not None and first.worker == "w1"
    store.end_attempt(attempt.id, AttemptOutcome.LOST, error="late", worker="w2")
    assert store.attempts("s") == [first]  # the first outcome stays, untouched

    beat = store.get_trial(trial.id).heartbeat_at
    assert store.beat_trial(trial.id, attempt.id, "w1") is False
    assert store.get_trial(trial.id).heartbeat_at == beat


def test_silent_trials_are_running_trials_past_the_grace(store: Store) -> None:
    store.create_study("s")
    store.create_study("other")
    old, fresh, waiting = (store.create_trial("s", {"i": i}) for i in range(3))
    elsewhere = store.create_trial("other", {})
    old_attempt = store.start_attempt(old.id, 9)
    store.start_attempt(elsewhere.id, 9)
    time.sleep(1.0)
    store.start_attempt(fresh.id, 9)
    assert [t.number for t in store.silent_trials("s", grace=0.7)] == [old.number]
    assert store.get_trial(waiting.id).status is TrialStatus.WAITING
    assert [t.number for t in store.silent_trials("s", grace=30)] == []

    assert store.beat_trial(old.id, old_attempt.id, "w") is True  # it spoke again
    assert store.silent_trials("s", grace=0.7) == []
    time.sleep(1.0)
    store.set_trial_status(fresh.id, TrialStatus.PAUSED)  # only running trials can be silent
    assert [t.number for t in store.silent_trials("s", grace=0.7)] == [old.number]


def test_close_open_attempts_closes_only_running_ones_of_the_study(store: Store) -> None:
    store.create_study("s")
    store.create_study("other")
    trials = [store.create_trial("s", {"i": i}) for i in range(3)]
    reported = store.start_attempt(trials[0].id, 9)
    store.end_attempt(reported.id, AttemptOutcome.REPORTED)
    store.start_attempt(trials[0].id, 27, resume_from=9)
    store.start_attempt(trials[1].id, 9)
    other = store.start_attempt(store.create_trial("other", {}).id, 9)

    assert store.close_open_attempts("s", AttemptOutcome.INTERRUPTED, error="the driver stopped") == 2
    got = {(a.trial_number, a.number): a for a in store.attempts("s")}
    assert got[(0, 1)].outcome is AttemptOutcome.REPORTED and got[(0, 1)].error is None
    for key in ((0, 2), (1, 1)):
        assert got[key].outcome is AttemptOutcome.INTERRUPTED and got[key].error == "the driver stopped"
        assert got[key].ended_at is not None
    assert store.attempts("other")[0].outcome is AttemptOutcome.RUNNING
    assert store.beat_trial(other.trial_id, other.id, "w") is True
    assert store.close_open_attempts("s", AttemptOutcome.INTERRUPTED) == 0


def test_delete_study_removes_its_attempts(store: Store, store_url: str) -> None:
    for name in ("gone", "kept"):
        store.create_study(name)
        trial = store.create_trial(name, {})
        store.end_attempt(store.start_attempt(trial.id, 3).id, AttemptOutcome.REPORTED)
        store.start_attempt(trial.id, 9)
        store.record_result(trial.id, 3, SCORE)
    assert _count(store_url, "trial_attempts") == 4
    store.delete_study("gone")
    assert _count(store_url, "trial_attempts") == 2
    assert [a.number for a in store.attempts("kept")] == [1, 2]
    assert _count(store_url, "trials") == 1 and _count(store_url, "trial_results") == 1


# -- migrating a database that holds studies ------------------------------------------------------------


def test_upgrade_from_0002_keeps_the_data_and_matches_the_models(store_url: str) -> None:
    upgrade(store_url, "0002")
    stamp = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    engine = create_engine(store_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        assert "trial_attempts" not in meta.tables and "lease_owner" not in meta.tables["studies"].c
        with engine.begin() as conn:
            conn.execute(meta.tables["studies"].insert(), [{
                "id": 1, "name": "old", "space": {"p": [1, 2]}, "recipe": {"task": "sst2"}, "objectives": ["score"],
                "strategy": "hyperband", "seed": 5, "status": "paused", "created_at": stamp, "updated_at": stamp}])
            conn.execute(meta.tables["trials"].insert(), [
                {"id": 10 + i, "study_id": 1, "number": i, "config": {"r": i}, "plan": None, "bracket": 1,
                 "status": status, "error": None, "worker": None, "created_at": stamp, "started_at": stamp,
                 "finished_at": None}
                for i, status in enumerate(("complete", "running"))])
            conn.execute(meta.tables["trial_results"].insert(), [
                {"id": 100, "trial_id": 10, "fidelity": 3, "objectives": SCORE, "metrics": {"m": 1},
                 "created_at": stamp}])
            conn.execute(meta.tables["pareto_snapshots"].insert(), [
                {"id": 7, "study_id": 1, "trial_ids": [10], "hypervolume": 0.25, "created_at": stamp}])
    finally:
        engine.dispose()

    upgrade(store_url)
    assert _diff(store_url) == []
    store = Store(store_url)
    try:
        study = store.get_study("old")
        assert (study.space, study.recipe, study.objectives, study.strategy, study.seed, study.status) == (
            {"p": [1, 2]}, {"task": "sst2"}, ["score"], "hyperband", 5, StudyStatus.PAUSED)
        assert study.created_at == stamp and _lease_fields(study) == (None, None, None, None)
        trials = store.trials("old")
        assert [(t.id, t.number, t.config, t.bracket, t.status, t.heartbeat_at) for t in trials] == [
            (10, 0, {"r": 0}, 1, TrialStatus.COMPLETE, None), (11, 1, {"r": 1}, 1, TrialStatus.RUNNING, None)]
        [result] = store.results("old")
        assert (result.trial_id, result.fidelity, result.objectives, result.metrics) == (10, 3, SCORE, {"m": 1})
        snapshot = store.latest_pareto_snapshot("old")
        assert snapshot is not None and (snapshot.trial_ids, snapshot.hypervolume) == ((10,), 0.25)
        assert store.attempts("old") == []
        # The migrated study runs under the new rules.
        lease = _lease()
        store.acquire_lease("old", lease, ttl=TTL)
        attempt = store.start_attempt(11, 27, resume_from=3, lease=lease.owner)
        assert attempt.number == 1 and store.beat_trial(11, attempt.id, "w")
        assert store.create_trial("old", {"r": 2}, lease=lease.owner).number == 2
    finally:
        store.close()


def test_end_attempt_waits_for_the_study_before_locking_the_attempt(store: Store, store_url: str) -> None:
    """A driver taken over while ending an attempt must not deadlock the new driver's `close_open_attempts`.

    The new driver locks the study row, then updates the open attempts; the old driver's `end_attempt`
    must take the study lock first too (to check its lease), or each waits for the other's row.
    """
    if not store_url.startswith("postgresql"):
        pytest.skip("row locks: SQLite has one database-wide write lock, so no lock order to get wrong")
    store.create_study("s")
    old, new = _lease(), _lease()
    store.acquire_lease("s", old, ttl=TTL)
    attempt = store.start_attempt(store.create_trial("s", {}, lease=old.owner).id, 9, lease=old.owner)
    engine = create_engine(store_url)
    outcome: list[object] = []
    try:
        with engine.begin() as conn:  # the new driver: takes the study, then closes its open attempts
            studies, attempts = Base.metadata.tables["studies"], Base.metadata.tables["trial_attempts"]
            conn.execute(studies.update().where(studies.c.name == "s").values(lease_owner=new.owner))
            ending = threading.Thread(target=lambda: outcome.append(_try(
                lambda: store.end_attempt(attempt.id, AttemptOutcome.REPORTED, lease=old.owner))))
            ending.start()
            time.sleep(0.3)  # the old driver is now waiting inside end_attempt
            conn.execute(attempts.update().where(attempts.c.id == attempt.id).values(outcome="interrupted"))
        ending.join(timeout=30)
    finally:
        engine.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], LeaseLostError), outcome
    assert [a.outcome for a in store.attempts("s")] == [AttemptOutcome.INTERRUPTED]


def _try(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as err:
        return err
