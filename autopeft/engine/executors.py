"""Where trials run: in this process (tests, debugging) or in a local pool of worker processes.

Every executor is an `Executor`: the lifecycle (submit, cancel one trial, restart, shutdown, the device
and threads a trial gets) is held once in the base class, and a contract test (tests/engine/
test_executors.py) runs against each one. `submit` returns a standard `concurrent.futures.Future`; a
future whose worker died raises `WorkerLostError`, one that ran past the trial timeout raises
`TrialTimeoutError`, and no other trial's future is touched by either.

The local pool is Pebble's `ProcessPool`, not the standard library's `ProcessPoolExecutor`: when one
worker of a `ProcessPoolExecutor` dies, the pool breaks and every running future fails with it, and it
can neither stop one running task nor time one out. Pebble does all three, per task.
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from types import TracebackType
from typing import Any, ClassVar

from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.train.resources import DevicePlan, default_threads, gpu_tag

Runner = Callable[[TrialTask], TrialOutcome]

#: The executors `make_executor` builds, by name (`--executor`).
EXECUTORS = ("local", "inprocess", "ray")
#: Why `--devices` and `--device` are not given together.
DEVICES_AND_DEVICE = ("gives each trial one GPU of its list and --device gives every trial the same device; "
                      "give one of them")
#: How often a pool worker checks that the process that started it (the study driver) is still alive.
PARENT_CHECK_SECONDS = 0.5


class WorkerLostError(RuntimeError):
    """The process running a trial died (killed, out of memory, a crash in native code): the trial may run again."""


class TrialTimeoutError(RuntimeError):
    """A trial ran past the study's trial timeout and was stopped."""


class Executor(abc.ABC):
    """Runs trial tasks, ``workers`` at a time; each trial may be limited to ``trial_timeout`` seconds.

    ``threads`` and ``device`` (`--threads`, `--device`) apply to every trial; without them a trial gets
    its recipe's `training.threads`, else `threads_per_trial`, and its recipe's device.
    """

    #: Runs each trial in the caller's thread, to the end, inside `submit` (nothing runs beside the driver).
    inline: ClassVar[bool] = False

    def __init__(self, workers: int, *, trial_timeout: float | None = None, threads: int | None = None,
                 device: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if trial_timeout is not None and trial_timeout <= 0:
            raise ValueError(f"trial_timeout must be > 0, got {trial_timeout}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.workers = workers
        self.trial_timeout = trial_timeout
        self.threads = threads
        self._device = device

    @abc.abstractmethod
    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        """Start ``runner(task)``; the future holds its outcome (or `WorkerLostError` / `TrialTimeoutError`)."""

    def cancel(self, future: Future[TrialOutcome]) -> None:  # noqa: B027 - nothing to stop by default
        """Stop one running trial (its worker process is ended); other trials go on."""

    def restart(self) -> None:  # noqa: B027 - nothing to restart by default
        """Replace workers that cannot take work any more; running trials are not touched."""

    def threads_per_trial(self) -> int | None:
        """CPU threads each trial should use (None: leave it to the recipe): `--threads`, if given."""
        return self.threads

    def device(self) -> str | None:
        """The device trials should train on (None: the recipe's choice)."""
        return self._device

    def place(self, task: TrialTask) -> TrialTask:
        """``task`` with the threads and device it runs with: `--threads`, else the recipe's, else the split.

        Every `submit` passes its task through here, so a recipe's `training.threads` is honoured in a study
        (the loop fills in only `threads_per_trial`, which cannot tell a default from a choice).
        """
        training = task.recipe.get("training") or {}
        threads = self.threads or training.get("threads") or self.threads_per_trial()
        return replace(task, threads=threads, device=self.device() or task.device)

    @abc.abstractmethod
    def shutdown(self, *, cancel: bool = False) -> None:
        """Release the workers; with ``cancel``, stop running trials too (their worker processes end)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.shutdown(cancel=error is not None)


class InProcessExecutor(Executor):
    """Runs each task at once, in this process: deterministic, no pickling; one worker, no timeout."""

    inline = True

    def __init__(self, *, threads: int | None = None, device: str | None = None) -> None:
        super().__init__(1, threads=threads, device=device)

    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        future: Future[TrialOutcome] = Future()
        try:
            future.set_result(runner(self.place(task)))
        except BaseException as err:  # surfaces at future.result(), as a pool's would (Ctrl-C included)
            future.set_exception(err)
        return future

    def shutdown(self, *, cancel: bool = False) -> None:
        return None


class LocalPoolExecutor(Executor):
    """A pool of ``workers`` spawned processes (each its own torch and threads), Pebble's `ProcessPool`.

    Each trial gets ``cores // workers`` threads (the cores this process may use, at least 1 each; or
    `--threads`, or the recipe's), so parallel trials do not fight over the CPU. With ``devices``
    (`--devices`, or every GPU of a multi-GPU machine), each trial trains on the least busy of them
    (`DevicePlan`), and its worker name ends in ``:gpu<N>``. Processes
    are reused across trials; ``max_tasks_per_child`` bounds memory creep from model loads. A worker whose
    driver dies (even by SIGKILL) notices within `PARENT_CHECK_SECONDS` and exits, so no orphan trains on.
    """

    def __init__(self, workers: int, *, trial_timeout: float | None = None, threads: int | None = None,
                 device: str | None = None, max_tasks_per_child: int | None = 20,
                 devices: Sequence[str] | None = None) -> None:
        super().__init__(workers, trial_timeout=trial_timeout, threads=threads, device=device)
        if devices and device is not None:
            raise ValueError("give a device for every trial or devices to share them out, not both")
        self.device_plan = DevicePlan(devices) if devices else None
        self._max_tasks = max_tasks_per_child or 0
        self._inner: dict[Future[TrialOutcome], Future[Any]] = {}
        self._placed: dict[Future[TrialOutcome], str] = {}  # the device each running trial holds
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> Any:
        from pebble import ProcessPool

        return ProcessPool(max_workers=self.workers, max_tasks=self._max_tasks,
                           context=multiprocessing.get_context("spawn"),
                           initializer=exit_with_parent, initargs=(os.getpid(),))

    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        outer: Future[TrialOutcome] = Future()
        self.restart()  # a pool whose manager failed is replaced once, before it takes the task
        placed = self.place(task)
        if self.device_plan is None:
            inner = self._pool.schedule(runner, args=(placed,), timeout=self.trial_timeout)
        else:
            placed = replace(placed, device=self.device_plan.acquire())
            try:
                inner = self._pool.schedule(run_on_device, args=(runner, placed), timeout=self.trial_timeout)
            except BaseException:
                self.device_plan.release(str(placed.device))
                raise
        with self._lock:
            self._inner[outer] = inner
            if self.device_plan is not None:
                self._placed[outer] = str(placed.device)
        inner.add_done_callback(lambda done: self._settle(outer, done))
        return outer

    def _free(self, outer: Future[TrialOutcome]) -> None:
        """Give back the device of a trial that ended, once, whichever way it ended."""
        with self._lock:
            self._inner.pop(outer, None)
            device = self._placed.pop(outer, None)
        if device is not None and self.device_plan is not None:
            self.device_plan.release(device)

    def _settle(self, outer: Future[TrialOutcome], inner: Future[Any]) -> None:
        """Pass the worker's result on, in the executor's own terms (no Pebble type reaches the loop)."""
        from pebble import ProcessExpired

        self._free(outer)
        if outer.done():
            return
        try:
            outer.set_result(inner.result())
        except CancelledError:
            outer.cancel()
        except FutureTimeout:
            outer.set_exception(TrialTimeoutError(f"stopped after {self.trial_timeout:g} s (the trial timeout)"))
        except ProcessExpired as err:
            outer.set_exception(WorkerLostError(f"the worker process died (exit code {err.exitcode}: killed, "
                                                "out of memory, or a crash in native code)"))
        except Exception as err:
            outer.set_exception(err)

    def cancel(self, future: Future[TrialOutcome]) -> None:
        with self._lock:
            inner = self._inner.get(future)
        if inner is not None:
            inner.cancel()  # Pebble ends the worker process running it and starts a fresh one
        future.cancel()

    def restart(self) -> None:
        if not self._pool.active:
            self._pool = self._new_pool()

    def threads_per_trial(self) -> int | None:
        return self.threads or default_threads(self.workers)

    def shutdown(self, *, cancel: bool = False) -> None:
        if cancel:
            self._pool.stop()  # ends the worker processes, running trials included
        else:
            self._pool.close()
        self._pool.join()
        with self._lock:
            unsettled = list(self._inner)
        for future in unsettled:
            self._free(future)
            future.cancel()  # a stopped pool settles nothing more


def run_on_device(runner: Runner, task: TrialTask) -> TrialOutcome:
    """In a pool worker: run ``runner`` on the GPU the pool gave the task, and say so in the worker name."""
    from autopeft.engine.worker import placed_on, worker_name

    tag = gpu_tag(str(task.device))
    with placed_on(tag):  # heartbeats name the GPU too, so a lost trial's attempt still says where it ran
        outcome = runner(task)
    worker = outcome.worker or worker_name()
    return replace(outcome, worker=worker if worker.endswith(tag) else worker + tag)


def exit_with_parent(parent_pid: int) -> None:
    """Worker initialiser: end this process as soon as its parent (the study driver) is gone.

    A killed driver cannot stop its workers itself; without this they would train on for minutes, at the
    same time as a resumed study runs the same trials. Polling `os.getppid` is portable across Unixes and
    unaffected by which driver thread started the worker (unlike Linux's PR_SET_PDEATHSIG).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(70)  # EX_SOFTWARE; no cleanup: the parent that would read our result is gone

    threading.Thread(target=watch, name="autopeft-parent-watch", daemon=True).start()


def check_devices_fit(devices: Sequence[str] | str | None, *, kind: str, device: str | None) -> None:
    """`--devices` belongs to the local pool alone and excludes `--device`; else one `ConfigError` line.

    The one place this is decided: `engine.checks` calls it before anything is written, `make_executor`
    again for callers of the Python API.
    """
    from autopeft.errors import ConfigError

    if not devices:
        return
    if kind == "ray":
        raise ConfigError("applies to --executor local only; with --executor ray a trial trains on the GPU Ray "
                          "gives it (--gpus-per-trial)", field="--devices")
    if kind != "local":
        raise ConfigError(f"applies to --executor local only (this run uses {kind})", field="--devices")
    if device is not None:
        raise ConfigError(DEVICES_AND_DEVICE, field="--devices")


def make_executor(kind: str, workers: int | None, *, trial_timeout: float | None = None, threads: int | None = None,
                  device: str | None = None, options: Mapping[str, Any] | None = None,
                  devices: Sequence[str] | None = None) -> Executor:
    """``local`` (process pool, the default), ``inprocess`` or ``ray``; ``threads`` and ``device`` for every trial.

    ``options`` go to the Ray executor (``address``, ``gpus_per_trial``, ``cpus_per_trial``, ``storage``);
    ``workers`` None: 1, or for Ray what the cluster holds. ``devices`` (the local pool's only): the GPUs
    its trials share, one each, least busy first.
    """
    from autopeft.errors import ConfigError

    check_devices_fit(devices, kind=kind, device=device)
    if kind == "ray":  # Ray is imported only there, and only now
        from autopeft.engine.ray_executor import make_ray_executor

        return make_ray_executor(workers, trial_timeout=trial_timeout, threads=threads, device=device, options=options)
    workers = workers or 1

    if kind == "local":
        return LocalPoolExecutor(workers, trial_timeout=trial_timeout, threads=threads, device=device,
                                 devices=devices)
    if kind == "inprocess":
        if workers != 1:
            raise ConfigError("the in-process executor runs one trial at a time; use --workers 1", field="workers")
        if trial_timeout is not None:
            raise ConfigError("the in-process executor cannot stop a trial; use --executor local",
                              field="trial-timeout")
        return InProcessExecutor(threads=threads, device=device)
    raise ConfigError(f"unknown executor {kind!r}; accepted: {', '.join(EXECUTORS)}", field="executor")
