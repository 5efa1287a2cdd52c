"""The store contract, run on SQLite always and on PostgreSQL when one is reachable."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable, Iterator
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from autopeft.errors import AutopeftError
from autopeft.store import (
    AlreadyExistsError,
    InvalidValueError,
    NotFoundError,
    Store,
    StoreError,
    StudyStatus,
    TrialStatus,
)
from tests.store._workers import create_study_on_a_new_store, create_trials

SPACE = {"parameters": {"rank": {"type": "int", "low": 1, "high": 64}}}
OBJECTIVES = [{"name": "accuracy", "direction": "maximize"}, {"name": "params", "direction": "minimize"}]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def test_create_get_list_delete_studies(store: Store) -> None:
    created = store.create_study("a", space=SPACE, recipe={"task": "sst2"}, objectives=OBJECTIVES,
                                 strategy="random", seed=3)
    store.create_study("b")
    got = store.get_study("a")
    assert got == created
    assert (got.space, got.recipe, got.objectives, got.strategy, got.seed) == (
        SPACE, {"task": "sst2"}, OBJECTIVES, "random", 3)
    assert got.status is StudyStatus.RUNNING and got.created_at.tzinfo == timezone.utc
    assert [s.name for s in store.list_studies()] == ["a", "b"]

    trial = store.create_trial("a", {"rank": 8})
    store.record_result(trial.id, 1, {"accuracy": 0.5, "params": 10.0})
    store.add_pareto_snapshot("a", [trial.id], 1.0)
    store.delete_study("a")
    assert [s.name for s in store.list_studies()] == ["b"]
    with pytest.raises(NotFoundError, match=r"no study named 'a'.*studies: b"):
        store.get_study("a")
    with pytest.raises(NotFoundError):
        store.get_trial(trial.id)


def test_duplicate_name_is_one_line_store_error(store: Store) -> None:
    store.create_study("dup")
    with pytest.raises(StoreError) as info:
        store.create_study("dup")
    assert isinstance(info.value, AlreadyExistsError) and isinstance(info.value, AutopeftError)
    message = str(info.value)
    assert "'dup' already exists" in message and "\n" not in message


def test_not_found_lists_nothing_when_empty(store: Store) -> None:
    with pytest.raises(NotFoundError, match=r"studies: none"):
        store.trials("missing")
    with pytest.raises(LookupError):
        store.set_trial_status(12345, TrialStatus.RUNNING)


def test_trials_are_numbered_densely_per_study(store: Store) -> None:
    store.create_study("x")
    store.create_study("y")
    numbers = [store.create_trial("x", {"i": i}, plan={"layers": [i]}).number for i in range(5)]
    assert numbers == [0, 1, 2, 3, 4]
    assert store.create_trial("y", {"i": 0}).number == 0
    trials = store.trials("x")
    assert [t.number for t in trials] == numbers
    assert trials[2].config == {"i": 2} and trials[2].plan == {"layers": [2]}
    assert all(t.status is TrialStatus.WAITING for t in trials)


def test_status_transitions(store: Store) -> None:
    store.create_study("s")
    t = store.create_trial("s", {})
    assert t.started_at is None and t.finished_at is None
    running = store.set_trial_status(t.id, "running", worker="host:1")
    assert running.status is TrialStatus.RUNNING and running.worker == "host:1" and running.started_at
    paused = store.set_trial_status(t.id, TrialStatus.PAUSED)
    assert paused.finished_at is None and paused.worker == "host:1"
    again = store.set_trial_status(t.id, TrialStatus.RUNNING)
    assert again.started_at == running.started_at
    done = store.set_trial_status(t.id, TrialStatus.FAILED, error="CUDA out of memory")
    assert done.finished_at is not None and done.error == "CUDA out of memory"
    with pytest.raises(InvalidValueError, match="is failed; it cannot become running"):
        store.set_trial_status(t.id, TrialStatus.RUNNING)
    assert store.get_trial(t.id).status is TrialStatus.FAILED
    other = store.create_trial("s", {})
    store.set_trial_status(other.id, TrialStatus.PRUNED)
    assert [t.number for t in store.trials("s", status=TrialStatus.PRUNED)] == [1]
    assert [t.number for t in store.trials("s", status=["failed", "pruned"])] == [0, 1]
    assert store.trial_counts("s")[TrialStatus.FAILED] == 1
    assert store.set_study_status("s", StudyStatus.COMPLETE).status is StudyStatus.COMPLETE
    with pytest.raises(ValueError):
        store.set_trial_status(other.id, "exploded")


def test_results_per_fidelity_and_idempotent(store: Store) -> None:
    store.create_study("r")
    t0, t1 = store.create_trial("r", {}), store.create_trial("r", {})
    store.record_result(t1.id, 3, {"accuracy": 0.7, "params": 2.0}, {"loss": 0.4})
    first = store.record_result(t0.id, 1, {"accuracy": 0.6, "params": 2.0})
    store.record_result(t0.id, 3, {"accuracy": 0.8, "params": 2.0}, {"loss": 0.3, "seconds": 12})
    again = store.record_result(t0.id, 1, {"accuracy": 0.1, "params": 9.0})
    assert again == first and again.objectives == {"accuracy": 0.6, "params": 2.0}
    results = store.results("r")
    assert [(r.trial_number, r.fidelity) for r in results] == [(0, 1), (0, 3), (1, 3)]
    assert results[1].metrics == {"loss": 0.3, "seconds": 12}
    assert [r.trial_id for r in store.results("r", fidelity=3)] == [t0.id, t1.id]
    with pytest.raises(InvalidValueError, match="'accuracy' is nan"):
        store.record_result(t1.id, 9, {"accuracy": float("nan")})


def test_pareto_snapshots(store: Store) -> None:
    store.create_study("p")
    store.create_study("q")
    assert store.latest_pareto_snapshot("p") is None
    ids = [store.create_trial("p", {}).id for _ in range(3)]
    store.add_pareto_snapshot("p", ids[:1], 0.25)
    latest = store.add_pareto_snapshot("p", [ids[2], ids[0]], 0.5)
    assert store.latest_pareto_snapshot("p") == latest
    assert latest.trial_ids == (ids[0], ids[2]) and latest.hypervolume == 0.5
    foreign = store.create_trial("q", {}).id
    with pytest.raises(InvalidValueError, match="not trials of study 'p'"):
        store.add_pareto_snapshot("p", [foreign], 0.1)


def test_a_study_recipe_is_replaced_whole(store: Store) -> None:
    """What a resume with a new --budget writes: the recipe column, options included, nothing else."""
    created = store.create_study("r", recipe={"fidelity": {"min": 1}, "options": {"budget": 2}}, strategy="mobo")
    updated = store.set_study_recipe("r", {"fidelity": {"min": 1}, "options": {"budget": 4}})
    assert store.get_study("r").recipe == {"fidelity": {"min": 1}, "options": {"budget": 4}} == updated.recipe
    assert updated.strategy == "mobo" and updated.status is created.status and updated.updated_at >= created.updated_at


def test_store_pickles_as_its_url(store: Store) -> None:
    store.create_study("k")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.url == store.url and clone.get_study("k").name == "k"
    clone.close()


def _race(workers: int, job: Callable[[int, Any, Any], tuple[Callable[..., None], tuple[Any, ...]]]) -> list[Any]:
    """Start ``workers`` spawned processes, ``job(i, barrier, queue)`` each (a target and its arguments), that
    wait for each other at the barrier and report one item each on the queue; return the reports."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=target, args=args) for target, args in (job(i, barrier, queue) for i in range(workers))]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return reports


def test_concurrent_processes_never_duplicate_or_lose_trial_numbers(store: Store, store_url: str) -> None:
    store.create_study("race")
    workers, per_worker = 4, 25
    reports = _race(workers, lambda i, barrier, queue: (create_trials, (store_url, "race", per_worker, barrier, queue)))
    assert all(isinstance(r, list) for r in reports), reports
    numbers = sorted(n for r in reports for n in r)
    assert numbers == list(range(workers * per_worker))
    assert [t.number for t in store.trials("race")] == list(range(workers * per_worker))


@pytest.mark.parametrize("attempt", range(3))
def test_processes_opening_a_new_store_at_once_all_write(store_url: str, attempt: int) -> None:
    """Two `study run`s on a new `autopeft.db` in the same second: both create the schema, neither fails."""
    workers = 4
    reports = _race(workers, lambda i, barrier, queue: (create_study_on_a_new_store,
                                                        (store_url, f"s{i}", barrier, queue)))
    assert sorted(reports) == [f"s{i}" for i in range(workers)], reports
    assert sorted(s.name for s in Store(store_url, read_only=True).list_studies()) == sorted(reports)


def test_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(StoreError, match=r"missing-dir|unable to open"):
        store.list_studies()


def test_an_unpooled_store_holds_no_server_connection_between_sessions() -> None:
    """What every trial's heartbeat uses: 128 trials must not hold 128 PostgreSQL connections."""
    import uuid

    import psycopg

    from tests.store_fixtures import PG_DB, PG_HOST, PG_PORT, pg_schema

    with pg_schema() as (user, schema):
        base = f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}?options=-csearch_path%3D{schema}"
        Store(base).create_study("s")
        trial = Store(base).create_trial("s", {"x": 1})
        attempt = Store(base).start_attempt(trial.id, 1)

        def held(store: Store, name: str) -> int:
            assert store.beat_trial(trial.id, attempt.id, "w")
            with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                   (name,)).fetchone()
            return int(row[0]) if row else 0

        pooled, unpooled = (f"autopeft-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
        assert held(Store(f"{base}&application_name={pooled}"), pooled) == 1  # the pool keeps it
        beating = Store(f"{base}&application_name={unpooled}", pooled=False)
        assert held(beating, unpooled) == 0  # closed after the beat
        assert pickle.loads(pickle.dumps(beating)).pooled is False  # as a worker process receives it
