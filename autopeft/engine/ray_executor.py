"""Trials as Ray tasks on a Ray cluster (`--executor ray`), behind the same `Executor` interface as the pool.

Ray is imported here only, and only when a `RayExecutor` is built (or a cluster probed), so the rest of
autopeft never needs it. Each trial is one Ray task with ``cpus_per_trial`` CPUs and ``gpus_per_trial``
GPUs (fractions allowed, e.g. 0.5 for two small trials on one GPU); Ray places it on a node with the
resources free and sets ``CUDA_VISIBLE_DEVICES`` to the GPU(s) it assigned, so the trial trains on
``cuda`` (the first visible device: its own GPU), never a hard-coded index.

Faults, in the executor's terms: Ray retries nothing (``max_retries=0``, ``retry_exceptions=False``). A
task whose worker process or node died (`WorkerCrashedError`, `NodeDiedError`, `ObjectLostError`, ...)
fails its future with `WorkerLostError`, so the loop re-queues the trial from its checkpoint (up to
``--max-retries``) as for a dead pool worker; a task that raised fails with the trial's own exception;
`cancel` and ``shutdown(cancel=True)`` force-cancel the tasks (`ray.cancel(force=True)` ends their worker
processes); ``trial_timeout`` is kept by a timer in the driver that force-cancels the task.

The trial timeout counts from when the trial starts on its worker, not from submission: a task queued for
lack of resources, or waiting for a worker process to start, does not time out meanwhile. With a timeout,
each trial is a streaming-generator task (`run_on_ray_streaming`) that yields `STARTED` first and then its
outcome; one driver thread waits on every such task (`ray.wait` on the generators) and starts a trial's
timer when its `STARTED` arrives. Chosen over the alternatives because it is Ray's own documented
channel from a running task to its owner: no extra actor (a process to keep alive and to lose with its
node), no polling of the store's heartbeat rows (the executor would need the store and every runner a
heartbeat) and no state API (served by the dashboard, which a cluster may not run). Ray Client does not
carry streaming generators: there the timer still starts at submission (a warning says so).

The worker name recorded with every attempt is ``ray:<node ip>/<node id, 8 hex>:<pid>`` followed by
``:gpu<ids>`` when the trial held GPUs, so where each trial ran can be read back from the store.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, replace
from typing import Any

from autopeft.engine.executors import Executor, Runner, TrialTimeoutError, WorkerLostError
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.engine.worker import placed_on
from autopeft.errors import ConfigError

log = logging.getLogger(__name__)

#: How often `RayExecutor.workers` looks at the live nodes again (nodes die and join during a study).
CAPACITY_CHECK_SECONDS = 5.0
#: `ray.exceptions` that mean the task's worker, node or result was lost (not that the trial failed).
LOST_ERRORS = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError",
               "OwnerDiedError", "ObjectReconstructionFailedError", "ObjectFetchTimedOutError",
               "TaskUnschedulableError", "OutOfMemoryError", "OutOfDiskError", "RaySystemError",
               "ReferenceCountingAssertionError", "TaskPlacementGroupRemoved", "RuntimeEnvSetupError")


@dataclass(frozen=True)
class NodeInfo:
    """One live node of the cluster: where it is and what a trial may take from it."""

    node_id: str
    ip: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ClusterInfo:
    """The live nodes of the cluster the driver is connected to."""

    address: str | None
    nodes: tuple[NodeInfo, ...]

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.nodes)

    def capacity(self, cpus_per_trial: float, gpus_per_trial: float) -> int:
        """How many trials the nodes can run at once (each trial within one node)."""
        total = 0
        for node in self.nodes:
            fits = [math.floor(have / need + 1e-9) for have, need in ((node.cpus, cpus_per_trial),
                                                                      (node.gpus, gpus_per_trial)) if need > 0]
            total += min(fits) if fits else 0
        return total

    @staticmethod
    def live_nodes(ray: Any) -> tuple[NodeInfo, ...]:
        return tuple(NodeInfo(n["NodeID"], n["NodeManagerAddress"], float(n["Resources"].get("CPU", 0)),
                              float(n["Resources"].get("GPU", 0))) for n in ray.nodes() if n.get("Alive"))

    def remote_ips(self) -> list[str]:
        """Node addresses that are not this machine's (nodes on other machines)."""
        here = local_ips()
        return sorted({n.ip for n in self.nodes if n.ip not in here})


def local_ips() -> set[str]:
    """Every address of this machine's network interfaces (and loopback)."""
    import socket

    import psutil

    found = {"127.0.0.1", "::1", "localhost"}
    for addresses in psutil.net_if_addrs().values():
        found.update(a.address.split("%")[0] for a in addresses if a.family in (socket.AF_INET, socket.AF_INET6))
    return found


def check_gpus_per_trial(value: float | None) -> float | None:
    """None (1 where the cluster has GPUs) or >= 0; above 1, a whole number (Ray's rule for GPU counts)."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"must be >= 0 (a fraction such as 0.5 shares a GPU), got {value:g}", field="gpus-per-trial")
    if value > 1 and value != int(value):
        raise ConfigError(f"above 1 it must be a whole number of GPUs, got {value:g}", field="gpus-per-trial")
    return value


def check_cpus_per_trial(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"must be > 0, got {value:g}", field="cpus-per-trial")
    return value


def check_address(address: str | None) -> str | None:
    """None (RAY_ADDRESS, else a new local Ray), ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    if address is None or address == "auto":
        return address
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{address!r} is not a Ray address; accepted: auto, HOST:PORT (the head's GCS port, "
                          "6379 by default) or ray://HOST:10001", field="ray-address")
    return address


_connected_here = False  # this process called ray.init (so it may call ray.shutdown)
#: Ray Client (``ray://``) starts a server process per client on the head; on a busy head that start can
#: fail ("Initialization failure from server"), and Ray Client's own retries cover only the channel. So the
#: connection is tried this many times, ``CLIENT_RETRY_SECONDS`` apart.
CLIENT_ATTEMPTS, CLIENT_RETRY_SECONDS = 3, 5.0


def _error_line(err: BaseException) -> str:
    """One line for a connection error: its first line, and where that only introduces a server's traceback
    ("Initialization failure from server:"), the traceback's last line, which names the cause."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def connect(address: str | None = None) -> ClusterInfo:
    """Connect this process to the cluster at ``address`` (once) and describe its live nodes."""
    global _connected_here
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"Ray is not installed ({err.name}); install autopeft[ray]", field="executor") from None
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        attempts = CLIENT_ATTEMPTS if (address or "").startswith("ray://") else 1
        for attempt in range(1, attempts + 1):
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
                break
            except (ConnectionError, RuntimeError, ValueError) as err:
                if attempt < attempts and "Initialization failure from server" in str(err):
                    log.info("Ray Client: the head could not start this client's server (%s); retrying",
                             _error_line(err))
                    time.sleep(CLIENT_RETRY_SECONDS)
                    continue
                where = address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
                raise ConfigError(f"cannot connect to the Ray cluster at {where}: {_error_line(err)}",
                                  field="ray-address") from None
        _connected_here = True
    return ClusterInfo(address, ClusterInfo.live_nodes(ray))


def disconnect() -> None:
    """Undo `connect` where this process made the connection."""
    global _connected_here
    if _connected_here:
        import ray

        ray.shutdown()
        _connected_here = False


def check_cluster(cluster: ClusterInfo, *, storage: str | None, gpus_per_trial: float | None,
                  cpus_per_trial: float) -> tuple[float, int]:
    """(GPUs per trial, trials at once) for this cluster; a store or a size it cannot serve is a `ConfigError`."""
    gpus = (1.0 if cluster.gpus > 0 else 0.0) if gpus_per_trial is None else gpus_per_trial
    capacity = cluster.capacity(cpus_per_trial, gpus)
    if capacity < 1:
        have = ", ".join(f"{n.ip} {n.cpus:g} CPU {n.gpus:g} GPU" for n in cluster.nodes) or "no live node"
        raise ConfigError(f"no node of the cluster can hold one trial of {cpus_per_trial:g} CPU and {gpus:g} GPU "
                          f"({have})", field="gpus-per-trial" if gpus > 0 else "cpus-per-trial")
    if storage is not None and storage.startswith("sqlite"):
        elsewhere = cluster.remote_ips()
        if elsewhere:
            raise ConfigError(f"the cluster has nodes on other machines ({', '.join(elsewhere)}), whose trials "
                              "cannot reach a SQLite file on this one; use PostgreSQL "
                              "(--storage postgresql+psycopg://USER@HOST/DB)", field="storage")
    return gpus, capacity


def run_on_ray(runner: Runner, task: TrialTask) -> TrialOutcome:
    """The Ray task: run ``runner`` on the GPU(s) Ray assigned, and say where it ran in the worker name."""
    placed, tag, worker = _place_here(task)
    with placed_on(tag):  # the heartbeats name the GPU(s) too: host:pid:gpu<ids>
        outcome = runner(placed)
    return replace(outcome, worker=worker)


def _place_here(task: TrialTask) -> tuple[TrialTask, str, str]:
    """The task on the device Ray gave this worker, the ``:gpu<ids>`` tag, and the worker's name."""
    import ray

    context = ray.get_runtime_context()
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    device = "cpu"
    if gpu_ids and task.device != "cpu":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"  # CUDA_VISIBLE_DEVICES: cuda is ours
    tag = f":gpu{','.join(gpu_ids)}" if gpu_ids else ""
    worker = f"ray:{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}:{os.getpid()}{tag}"
    return replace(task, device=device), tag, worker


#: What a streaming trial task yields first, when the trial starts on its worker (its timeout starts then).
STARTED = "autopeft:started"


def run_on_ray_streaming(runner: Runner, task: TrialTask) -> Iterator[str | TrialOutcome]:
    """`run_on_ray` as a streaming generator: `STARTED` once placed (torch imported), then the outcome."""
    placed, tag, worker = _place_here(task)
    yield STARTED
    with placed_on(tag):
        outcome = runner(placed)
    yield replace(outcome, worker=worker)


class RayExecutor(Executor):
    """Runs each trial as a Ray task on the cluster at ``address``; up to ``workers`` at once.

    ``workers`` defaults to what the cluster's live nodes hold (trials of ``cpus_per_trial`` CPUs and
    ``gpus_per_trial`` GPUs, each within one node), and is never more: a trial queued in Ray would miss
    its heartbeats and be taken as lost. It follows the cluster (looked at every `CAPACITY_CHECK_SECONDS`):
    after a node dies the loop starts fewer trials at once, and more again when nodes join, up to the
    ``workers`` asked for. ``gpus_per_trial`` defaults to 1 where the cluster
    has GPUs, else 0. ``storage`` (the study's store URL) lets the executor refuse SQLite on a cluster with
    nodes on other machines. ``reuse_workers`` (None: decide by `reuses_workers_safely`) lets a worker process
    run one trial after another.
    """

    def __init__(self, workers: int | None = None, *, address: str | None = None, gpus_per_trial: float | None = None,
                 cpus_per_trial: float = 1.0, trial_timeout: float | None = None, threads: int | None = None,
                 device: str | None = None, storage: str | None = None, reuse_workers: bool | None = None) -> None:
        import ray

        self.cpus_per_trial = check_cpus_per_trial(cpus_per_trial)
        self.cluster = connect(check_address(address))
        self.gpus_per_trial, capacity = check_cluster(self.cluster, storage=storage,
                                                      gpus_per_trial=check_gpus_per_trial(gpus_per_trial),
                                                      cpus_per_trial=self.cpus_per_trial)
        if workers is not None and workers > capacity:
            log.warning("the cluster holds %d trials at once; running %d, not %d", capacity, capacity, workers)
        self._limit, self._capacity, self._checked = workers, capacity, time.monotonic()
        super().__init__(min(workers or capacity, capacity), trial_timeout=trial_timeout, threads=threads,
                         device=device)
        self._ray = ray
        reuse = reuses_workers_safely(self.cluster, self.gpus_per_trial) if reuse_workers is None else reuse_workers
        # max_calls=1: a fresh worker process per trial (Ray's own default for functions declared with GPUs,
        # which setting the GPUs through `.options` bypasses).
        calls = 0 if reuse else 1  # 0: Ray's "no limit"
        self._remote = ray.remote(max_retries=0, retry_exceptions=False, max_calls=calls)(run_on_ray).options(
            num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial)
        # With a timeout, trials say when they start (streaming tasks, watched by one thread); Ray Client
        # has no streaming generators, so there the timeout counts from submission.
        self._streaming = trial_timeout is not None and not ray.util.client.ray.is_connected()
        if trial_timeout is not None and not self._streaming:
            log.warning("through Ray Client the trial timeout counts from submission (queueing included)")
        self._remote_streaming = ray.remote(max_retries=0, retry_exceptions=False, num_returns="streaming",
                                            max_calls=calls)(
            run_on_ray_streaming).options(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial)
        self._streams: dict[Future[TrialOutcome], Any] = {}  # not started or not finished yet
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None
        self._closing = False
        self._lost = tuple(getattr(ray.exceptions, name) for name in LOST_ERRORS if hasattr(ray.exceptions, name))
        self._refs: dict[Future[TrialOutcome], Any] = {}
        self._timers: dict[Future[TrialOutcome], threading.Timer] = {}
        self._lock = threading.Lock()

    @property
    def workers(self) -> int:
        """The most trials at once: what the live nodes hold now (at least 1), up to the ``workers`` asked for."""
        now = time.monotonic()
        if now - self._checked >= CAPACITY_CHECK_SECONDS and self._ray.is_initialized():
            self._checked = now
            try:
                nodes = ClusterInfo.live_nodes(self._ray)
            except Exception as err:  # the GCS did not answer: keep the last figure
                log.debug("could not list the Ray nodes: %s", err)
            else:
                self._capacity = ClusterInfo(None, nodes).capacity(self.cpus_per_trial, self.gpus_per_trial)
        return max(1, min(self._limit or self._capacity, self._capacity))

    @workers.setter
    def workers(self, value: int) -> None:  # the base class's constructor sets it
        pass

    def submit(self, runner: Runner, task: TrialTask) -> Future[TrialOutcome]:
        outer: Future[TrialOutcome] = Future()
        if self._streaming:
            stream = self._remote_streaming.remote(runner, self.place(task))
            with self._lock:
                self._refs[outer] = self._streams[outer] = stream
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="autopeft-ray-watch", daemon=True)
                    self._watcher.start()
            self._wake.set()
            return outer
        ref = self._remote.remote(runner, self.place(task))
        with self._lock:
            self._refs[outer] = ref
            if self.trial_timeout is not None:
                timer = threading.Timer(self.trial_timeout, self._time_out, args=(outer,))
                timer.daemon = True
                self._timers[outer] = timer
                timer.start()
        ref.future().add_done_callback(lambda done: self._settle(outer, done))
        return outer

    def _watch(self) -> None:
        """The streaming tasks' thread: start a trial's timer when it starts, pass its outcome on when it ends."""
        ray = self._ray
        while True:
            with self._lock:
                if self._closing:
                    return
                streams = list(self._streams.items())
            if not streams:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                ready, _ = ray.wait([s for _, s in streams], num_returns=1, timeout=0.5, fetch_local=False)
            except Exception as err:  # the GCS did not answer: try again
                log.debug("ray.wait on the trial tasks failed: %s", err)
                time.sleep(0.5)
                continue
            for outer, stream in streams:
                if any(stream is r for r in ready):
                    self._step(outer, stream)

    def _step(self, outer: Future[TrialOutcome], stream: Any) -> None:
        """The next item of a streaming task is ready: its start (the timer begins) or its end."""
        inner: Future[Any] = Future()
        try:
            value = self._ray.get(next(stream))
        except StopIteration:
            inner.set_exception(WorkerLostError("the Ray task ended without an outcome"))
        except Exception as err:  # the trial raised, or its worker was lost: `_settle` says which
            inner.set_exception(err)
        else:
            if value == STARTED:
                with self._lock:
                    if outer in self._refs and self.trial_timeout is not None:
                        timer = threading.Timer(self.trial_timeout, self._time_out, args=(outer,))
                        timer.daemon = True
                        self._timers[outer] = timer
                        timer.start()
                return
            inner.set_result(value)
        with self._lock:
            self._streams.pop(outer, None)
        self._settle(outer, inner)

    def _forget(self, outer: Future[TrialOutcome]) -> Any:
        with self._lock:
            timer = self._timers.pop(outer, None)
            ref = self._refs.pop(outer, None)
        if timer is not None:
            timer.cancel()
        return ref

    def _settle(self, outer: Future[TrialOutcome], inner: Future[Any]) -> None:
        """Pass the task's result on, in the executor's own terms (no Ray type reaches the loop)."""
        self._forget(outer)
        if outer.done():
            return
        exceptions = self._ray.exceptions
        try:
            result = inner.result()
        except CancelledError:
            error: BaseException | None = WorkerLostError("the Ray task was cancelled outside autopeft")
        except exceptions.TaskCancelledError:
            error = WorkerLostError("the Ray task was cancelled outside autopeft")
        except exceptions.RayTaskError as err:  # the trial raised: its own error (a lost worker if Ray's own)
            cause = err.cause if isinstance(err.cause, BaseException) else err
            error = self._lost_error(cause) if isinstance(cause, self._lost) else cause
        except self._lost as err:
            error = self._lost_error(err)
        except Exception as err:  # another Ray error: the task did not finish through no fault of the trial
            error = WorkerLostError(f"the Ray task was lost ({type(err).__name__}: {_first_line(err)})")
        else:
            error = None
        try:
            if error is None:
                outer.set_result(result)
            else:
                outer.set_exception(error)
        except Exception:  # settled meanwhile (cancelled, timed out)
            pass

    @staticmethod
    def _lost_error(err: BaseException) -> WorkerLostError:
        return WorkerLostError(f"the worker process died on the Ray cluster ({type(err).__name__}: "
                               f"{_first_line(err)})")

    def _time_out(self, outer: Future[TrialOutcome]) -> None:
        ref = self._forget(outer)
        if ref is None or outer.done():
            return
        self._ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):  # settled meanwhile
            outer.set_exception(TrialTimeoutError(f"stopped after {self.trial_timeout:g} s (the trial timeout)"))

    def cancel(self, future: Future[TrialOutcome]) -> None:
        ref = self._forget(future)
        future.cancel()
        if ref is not None:
            self._ray.cancel(ref, force=True)  # ends the worker process running it

    def threads_per_trial(self) -> int | None:
        return self.threads or max(1, math.floor(self.cpus_per_trial))

    def shutdown(self, *, cancel: bool = False) -> None:
        with self._lock:
            running = list(self._refs.items())
        if cancel:
            for future, _ in running:
                self.cancel(future)
        else:
            for future, _ in running:
                with contextlib.suppress(CancelledError):
                    future.exception()  # wait for running trials to finish
        for future, _ in running:
            self._forget(future)
        with self._lock:
            self._streams.clear()
            watcher, self._closing = self._watcher, True
        self._wake.set()
        if watcher is not None:
            watcher.join(timeout=5)  # out of `ray.wait` before the connection goes
        disconnect()


def reuses_workers_safely(cluster: ClusterInfo, gpus_per_trial: float) -> bool:
    """Whether one worker process may run trial after trial: not where trials take GPUs on a node with several.

    Ray hands a reused worker process trials on any GPU of its node, setting ``CUDA_VISIBLE_DEVICES`` for each,
    but CUDA fixes the GPUs a process sees when torch first uses them: the second trial would train on the
    first trial's GPU, beside another trial. A fresh process per trial costs its start-up (torch, the model:
    ~10 s on a 2-core CPU, `benchmarks/ray_actor_vs_task.py`), so it is paid only where it is needed: on CPU
    clusters and one-GPU nodes workers are reused.
    """
    return gpus_per_trial <= 0 or all(node.gpus <= 1 for node in cluster.nodes)


def make_ray_executor(workers: int | None, *, trial_timeout: float | None = None, threads: int | None = None,
                      device: str | None = None, options: Mapping[str, Any] | None = None) -> RayExecutor:
    """A `RayExecutor` from the CLI's options (``address``, ``gpus_per_trial``, ``cpus_per_trial``, ``storage``)."""
    return RayExecutor(workers, trial_timeout=trial_timeout, threads=threads, device=device, **dict(options or {}))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
