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
from tests.engine.faulty import dying_runner, echo_runner, hanging_runner, raising_runner

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
