"""The executor contract: every executor runs it (Ray on the local test cluster of tests/engine/conftest.py).

What a loop relies on: a future per task with its outcome; a runner's exception surfaces at
`result()`; a dead worker fails only its own future (`WorkerLostError`) and the executor takes more
work; a trial past the timeout fails with `TrialTimeoutError`; `cancel` and `shutdown(cancel=True)` end
the worker processes; workers die with their driver.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import psutil
import pytest

from autopeft.engine.executors import (
    Executor,
    InProcessExecutor,
    LocalPoolExecutor,
    TrialTimeoutError,
    WorkerLostError,
)
from autopeft.engine.ray_executor import RayExecutor
from autopeft.engine.task import TrialTask
from autopeft.status import TrialStatus
from autopeft.train.resources import available_cores
from tests.engine.faulty import device_runner, dying_runner, echo_runner, hanging_runner, raising_runner

REPO = Path(__file__).resolve().parents[2]


def _task(number: int = 0, **options: Any) -> TrialTask:
    return TrialTask(study="s", number=number, config={"x": 0.5, "y": 0.5}, trial_config=None, recipe={},
                     recipe_dir=".", fidelity=3, options=options)


EXECUTORS: dict[str, Callable[[pytest.FixtureRequest], Executor]] = {
    "inprocess": lambda _: InProcessExecutor(),
    "local": lambda _: LocalPoolExecutor(2),
    "ray": lambda request: RayExecutor(2, address=request.getfixturevalue("ray_cluster").address),
}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.slow) if name == "ray" else name for name in EXECUTORS])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    made = EXECUTORS[request.param](request)
    yield made
    made.shutdown(cancel=True)


def _pool_only(executor: Executor) -> None:
    if isinstance(executor, InProcessExecutor):
        pytest.skip("the in-process executor runs trials in the driver itself: no worker to lose, stop or time out")


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def _wait_for(path: Path, within: float = 60.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {within} s")


def test_every_executor_the_cli_offers_runs_this_contract() -> None:
    from autopeft.engine import executors

    assert set(EXECUTORS) == set(executors.EXECUTORS)


def test_a_task_reports_its_outcome(executor: Executor) -> None:
    outcome = executor.submit(echo_runner, _task(7)).result(timeout=120)
    assert outcome.number == 7 and outcome.status is TrialStatus.COMPLETE and outcome.ok
    assert set(outcome.objectives) == {"score", "trainable_params"}


def test_a_runner_that_raises_surfaces_at_result(executor: Executor) -> None:
    future = executor.submit(raising_runner, _task())
    with pytest.raises(RuntimeError, match="boom"):
        future.result(timeout=120)
    assert executor.submit(echo_runner, _task(1)).result(timeout=120).ok  # still takes work


def test_threads_split_the_cores_between_workers(executor: Executor) -> None:
    expected = None if isinstance(executor, InProcessExecutor) else max(1, available_cores() // executor.workers)
    if isinstance(executor, RayExecutor):
        expected = 1  # its CPUs per trial
    assert executor.threads_per_trial() == expected


def test_a_dead_worker_fails_only_its_own_trial(executor: Executor, tmp_path: Path) -> None:
    _pool_only(executor)
    survivor = executor.submit(echo_runner, _task(0, sleep=3.0, pid_file=str(tmp_path / "survivor")))
    _wait_for(tmp_path / "survivor")  # the survivor runs on one worker before the other one dies
    victim = executor.submit(dying_runner, _task(1))
    with pytest.raises(WorkerLostError, match="worker process died"):
        victim.result(timeout=120)
    assert survivor.result(timeout=120).ok
    assert executor.submit(echo_runner, _task(2)).result(timeout=120).ok  # a fresh worker took the place


def test_a_trial_past_the_timeout_fails_and_the_pool_goes_on(tmp_path: Path) -> None:
    pool = LocalPoolExecutor(1, trial_timeout=2.0)
    try:
        hung = pool.submit(hanging_runner, _task(0, hang_on=[0], pid_file=str(tmp_path / "hung")))
        pid = _wait_for(tmp_path / "hung")
        with pytest.raises(TrialTimeoutError, match="2 s"):
            hung.result(timeout=60)
        assert _gone(pid)
        assert pool.submit(echo_runner, _task(1)).result(timeout=120).ok
    finally:
        pool.shutdown(cancel=True)


def test_cancel_ends_the_worker_running_the_trial(executor: Executor, tmp_path: Path) -> None:
    _pool_only(executor)
    future = executor.submit(echo_runner, _task(0, sleep=60, pid_file=str(tmp_path / "pid")))
    pid = _wait_for(tmp_path / "pid")
    executor.cancel(future)
    assert future.cancelled() and _gone(pid)
    assert executor.submit(echo_runner, _task(1)).result(timeout=120).ok


def test_shutdown_with_cancel_stops_running_trials(tmp_path: Path) -> None:
    pool = LocalPoolExecutor(2)
    futures = [pool.submit(echo_runner, _task(i, sleep=60, pid_file=str(tmp_path / f"p{i}"))) for i in range(2)]
    pids = [_wait_for(tmp_path / f"p{i}") for i in range(2)]
    pool.shutdown(cancel=True)
    assert all(_gone(pid) for pid in pids)
    wait(futures, timeout=10)
    assert all(f.done() for f in futures)


def test_workers_die_with_their_driver(tmp_path: Path) -> None:
    """SIGKILL of the driver: its workers notice within a second and exit (no orphan trains on)."""
    script = textwrap.dedent(f"""
        import time
        from autopeft.engine.executors import LocalPoolExecutor
        from autopeft.engine.task import TrialTask
        from tests.engine.faulty import echo_runner
        pool = LocalPoolExecutor(2)
        for i in range(2):
            options = {{"sleep": 600, "pid_file": r"{tmp_path}/w%d" % i}}
            pool.submit(echo_runner, TrialTask(study="s", number=i, config={{"x": 0.5, "y": 0.5}}, trial_config=None,
                        recipe={{}}, recipe_dir=".", fidelity=3, options=options))
        time.sleep(600)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        pids = [_wait_for(tmp_path / f"w{i}", within=120) for i in range(2)]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        assert all(_gone(pid, within=10) for pid in pids), "a worker outlived its killed driver"
    finally:
        driver.kill()


def test_a_trial_folder_in_use_by_a_live_process_is_not_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job of a resumed study never trains into a folder that a job of an old run still holds."""
    import fcntl

    from autopeft.engine import worker

    monkeypatch.setattr(worker, "FOLDER_LOCK_WAIT_SECONDS", 0.5)
    folder = tmp_path / "trial_0"
    folder.mkdir()
    with open(folder / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the old run's job, still alive
        outcome = worker.run_trial(TrialTask(study="s", number=0, config={}, trial_config={}, recipe={},
                                             recipe_dir=".", fidelity=1, trial_dir=str(folder)))
    assert outcome.status is TrialStatus.FAILED and "still in use by another process" in (outcome.error or "")


# --- a local pool sharing GPUs out (`--devices`) -------------------------------------------------------------
# No GPU exists where these run: the cuda:N strings reach the runner (`device_runner` reports them) but are
# never given to torch. What is tested is which device each trial is handed and when it is handed back.

GPUS = ("cuda:0", "cuda:1", "cuda:2", "cuda:3")


def _idle(pool: LocalPoolExecutor, within: float = 10.0) -> dict[str, int]:
    """The plan's busy counts once every device is back (a trial's device returns on the pool's thread)."""
    assert pool.device_plan is not None
    deadline = time.monotonic() + within
    while any(pool.device_plan.busy().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pool.device_plan.busy()


def test_four_workers_on_four_devices_run_one_trial_on_each(tmp_path: Path) -> None:
    pool = LocalPoolExecutor(4, devices=GPUS)
    try:
        # each trial waits until all four run at once, so none could have reused another's device or worker
        futures = [pool.submit(device_runner, _task(i, gather=str(tmp_path), together=4)) for i in range(4)]
        assert pool.device_plan is not None and pool.device_plan.busy() == dict.fromkeys(GPUS, 1)
        outcomes = [f.result(timeout=120) for f in futures]
    finally:
        pool.shutdown(cancel=True)
    assert len({o.metrics["pid"] for o in outcomes}) == 4  # four worker processes at once
    assert sorted(o.metrics["device"] for o in outcomes) == list(GPUS)
    for outcome in outcomes:
        tag = ":gpu" + outcome.metrics["device"].removeprefix("cuda:")
        assert outcome.worker == f"{outcome.metrics['pid']}{tag}"  # the store says where the trial ran
        assert outcome.metrics["heartbeat_name"].endswith(tag)  # and so do the job's heartbeats
    assert _idle(pool) == dict.fromkeys(GPUS, 0)


def test_more_workers_than_devices_share_them_evenly(tmp_path: Path) -> None:
    pool = LocalPoolExecutor(4, devices=GPUS[:2])
    try:
        futures = [pool.submit(device_runner, _task(i, gather=str(tmp_path), together=4)) for i in range(4)]
        devices = [f.result(timeout=120).metrics["device"] for f in futures]
    finally:
        pool.shutdown(cancel=True)
    assert sorted(devices) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]


def test_a_device_comes_back_when_its_trial_ends_however_it_ends(tmp_path: Path) -> None:
    """Reported, raised, cancelled, its worker lost: each gives its device back, once; a running trial keeps its."""
    pool = LocalPoolExecutor(2, devices=GPUS[:2])
    try:
        assert pool.submit(device_runner, _task(0)).result(timeout=120).metrics["device"] == "cuda:0"
        assert _idle(pool) == {"cuda:0": 0, "cuda:1": 0}
        with pytest.raises(RuntimeError, match="boom"):
            pool.submit(raising_runner, _task(1)).result(timeout=120)  # cuda:1, in turn
        assert _idle(pool) == {"cuda:0": 0, "cuda:1": 0}

        held = pool.submit(echo_runner, _task(2, sleep=60, pid_file=str(tmp_path / "held")))  # cuda:0
        _wait_for(tmp_path / "held")
        cancelled = pool.submit(echo_runner, _task(3, sleep=60, pid_file=str(tmp_path / "cancelled")))  # cuda:1
        _wait_for(tmp_path / "cancelled")
        assert pool.device_plan is not None and pool.device_plan.busy() == {"cuda:0": 1, "cuda:1": 1}
        pool.cancel(cancelled)
        assert _idle_one(pool, "cuda:1")
        with pytest.raises(WorkerLostError):
            pool.submit(dying_runner, _task(4)).result(timeout=120)  # the least busy: cuda:1
        assert _idle_one(pool, "cuda:1")
        assert pool.device_plan.busy() == {"cuda:0": 1, "cuda:1": 0}  # the held trial kept its device throughout
        outcome = pool.submit(device_runner, _task(6)).result(timeout=120)
        assert outcome.metrics["device"] == "cuda:1"
        pool.cancel(held)
    finally:
        pool.shutdown(cancel=True)
    assert _idle(pool) == {"cuda:0": 0, "cuda:1": 0}


def test_a_trial_past_the_timeout_gives_its_device_back() -> None:
    pool = LocalPoolExecutor(1, devices=GPUS[:1], trial_timeout=2.0)
    try:
        with pytest.raises(TrialTimeoutError):
            pool.submit(hanging_runner, _task(0, hang_on=[0])).result(timeout=120)
        assert _idle(pool) == {"cuda:0": 0}
        assert pool.submit(device_runner, _task(1)).result(timeout=120).metrics["device"] == "cuda:0"
    finally:
        pool.shutdown(cancel=True)


def _idle_one(pool: LocalPoolExecutor, device: str, within: float = 10.0) -> bool:
    assert pool.device_plan is not None
    deadline = time.monotonic() + within
    while pool.device_plan.busy()[device] and time.monotonic() < deadline:
        time.sleep(0.05)
    return pool.device_plan.busy()[device] == 0


def test_shutdown_gives_every_device_back(tmp_path: Path) -> None:
    pool = LocalPoolExecutor(2, devices=GPUS[:2])
    for i in range(2):
        pool.submit(echo_runner, _task(i, sleep=60, pid_file=str(tmp_path / f"p{i}")))
    for i in range(2):
        _wait_for(tmp_path / f"p{i}")
    pool.shutdown(cancel=True)
    assert pool.device_plan is not None and pool.device_plan.busy() == {"cuda:0": 0, "cuda:1": 0}


def test_a_pool_without_devices_leaves_the_task_and_the_worker_name_alone() -> None:
    pool = LocalPoolExecutor(1)
    try:
        outcome = pool.submit(device_runner, _task(0)).result(timeout=120)
    finally:
        pool.shutdown(cancel=True)
    assert pool.device_plan is None and outcome.metrics["device"] is None
    assert outcome.worker == str(outcome.metrics["pid"]) and ":gpu" not in outcome.metrics["heartbeat_name"]


def test_devices_are_the_local_pools_alone() -> None:
    from autopeft.engine.executors import make_executor
    from autopeft.errors import ConfigError

    for kind in ("inprocess", "ray"):
        with pytest.raises(ConfigError, match="--devices: applies to --executor local only"):
            make_executor(kind, 1, devices=GPUS[:1])
    with pytest.raises(ConfigError, match=r"--devices: .* give one of them"):
        make_executor("local", 1, device="cpu", devices=GPUS[:1])
    pool = make_executor("local", 2, devices=GPUS[:2])
    try:
        assert isinstance(pool, LocalPoolExecutor) and pool.device_plan is not None
        assert pool.device_plan.devices == GPUS[:2]
    finally:
        pool.shutdown()


def test_the_store_says_which_device_each_trial_ran_on(tmp_path: Path) -> None:
    from autopeft.store import Store
    from tests.engine.test_loop import _loop, _study

    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    definition = _study(store, "d", strategy="random")
    pool = LocalPoolExecutor(2, devices=GPUS[:2])
    try:
        _loop(store, "d", definition, budget=2.0, strategy="random", runner=device_runner, executor=pool).run()
    finally:
        pool.shutdown(cancel=True)
    attempts = store.attempts("d")
    assert attempts and all(a.worker and a.worker.endswith((":gpu0", ":gpu1")) for a in attempts)
    assert {a.worker.rsplit(":", 1)[1] for a in attempts if a.worker} == {"gpu0", "gpu1"}  # both devices used
    assert all(t.worker and ":gpu" in t.worker for t in store.trials("d"))
