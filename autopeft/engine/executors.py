"""Where trials run: in this process (tests, debugging) or in a local pool of worker processes.

The interface is the standard library's `concurrent.futures`: `submit(fn, task)` returns a `Future`,
and the study loop waits on futures. A Ray executor only has to hand back futures too (Ray object
refs convert with `ref.future()`), so it slots in without touching the loop.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from autopeft.engine.task import TrialOutcome, TrialTask

Runner = Callable[[TrialTask], TrialOutcome]


class Executor(Protocol):
    """Runs trial tasks; `workers` is how many run at once."""

    workers: int

    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        """Start ``runner(task)``; the future holds its outcome."""
        ...

    def threads_per_trial(self) -> int | None:
        """CPU threads each trial should use (None: leave it to the recipe)."""
        ...

    def shutdown(self, *, cancel: bool = False) -> None:
        """Release the workers; with ``cancel``, stop running trials too."""
        ...


class InProcessExecutor:
    """Runs each task at once, in this process: deterministic, no pickling; `workers` is 1."""

    workers = 1

    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        future: Future[TrialOutcome] = Future()
        try:
            future.set_result(runner(task))
        except BaseException as err:  # surfaces at future.result(), as a pool's would
            future.set_exception(err)
        return future

    def threads_per_trial(self) -> int | None:
        return None

    def shutdown(self, *, cancel: bool = False) -> None:
        return None


class LocalPoolExecutor:
    """A pool of ``workers`` processes (spawned, so each has its own torch and threads).

    Each trial gets ``cores // workers`` threads, so parallel trials do not fight over the CPU.
    Processes are reused across trials; `max_tasks_per_child` bounds memory creep from model loads.
    """

    def __init__(self, workers: int, *, max_tasks_per_child: int | None = 20) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._max_tasks = max_tasks_per_child
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.workers, mp_context=context, max_tasks_per_child=self._max_tasks)

    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        return self._pool.submit(runner, task)

    def restart(self) -> None:
        """Replace a broken pool (a worker died: killed for memory, or a crash in native code)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def threads_per_trial(self) -> int | None:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def shutdown(self, *, cancel: bool = False) -> None:
        if cancel:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()  # no public way to stop running tasks; the pool is discarded after
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


def make_executor(kind: str, workers: int) -> Any:
    """``local`` (process pool, the default) or ``inprocess``."""
    from autopeft.errors import ConfigError

    if kind == "local":
        return LocalPoolExecutor(workers)
    if kind == "inprocess":
        if workers != 1:
            raise ConfigError("the in-process executor runs one trial at a time; use --workers 1", field="workers")
        return InProcessExecutor()
    raise ConfigError(f"unknown executor {kind!r}; accepted: local, inprocess", field="executor")
