"""Cluster scale: how much of a Ray cluster's GPU time a study leaves idle waiting for its driver.

A study of the synthetic objective (tests/engine/synthetic.py: two floats, score against parameters,
fidelity 1 to 27, eta 3) whose trials sleep a fixed time (``--trial-seconds``) instead of training,
beating their heartbeat into the store as a real trial does. It runs through the real study loop,
`RayExecutor` (one logical GPU per trial) and the PostgreSQL store (a throwaway schema), on a local Ray
cluster started here for each size: a head with no resources and one worker node with N CPUs and N
logical GPUs (Ray hands out GPU ids without hardware), started with the ``ray start`` CLI, and ended by
its own processes afterwards (never ``ray stop``, which would end other sessions' clusters).

The budget is time: the loop starts work for ``--waves`` trial lengths, then lets running jobs finish,
so every size runs the same number of waves. Measured, from outside the loop (no hook in it):

- ``idle_share``: over the window in which the study still had work to hand out (first attempt start
  to last attempt start), 1 - busy GPU-seconds / (GPUs x window), from the store's attempt timestamps.
  ``idle_share_runner`` is the same from the trials' own sleep start/end (it also counts the Ray
  scheduling and worker start-up between the driver's submit and the trial running).
- ``driver_ms_per_trial``: for each result, the time from its arrival (the executor's future done) to
  the driver's next submit, which hands the freed GPU new work: median and p90 (FIFO-matched).
  ``driver_busy_ms_per_trial``: the driver's time outside its wait for results, per result, split
  into propose (sampler), store (the loop's writes and reads) and decide (the scheduler, less
  proposals made inside it); the rest is the loop's own bookkeeping.
- ``store_trials_per_s``: results recorded per second at peak (the most in any one-second window);
  ``store_capacity_trials_per_s``: results / seconds the driver spent in the store (what it could take
  if the driver did nothing else), and ``heartbeats_per_s`` beside it.
- Memory: the cluster's processes (RSS sum, peak), one Ray worker's RSS (median), the least memory
  available on the machine; the peak count of PostgreSQL connections.

A size whose trial heartbeats would need more PostgreSQL connections than the server has free runs
without heartbeats, and the row says so (each trial process holds one connection for its beats).
A size that would leave less than ``--min-free-gb`` of memory is stopped (the row says where it broke).

Full run:  python benchmarks/cluster_scale.py                           (8, 32, 128 GPUs; 60 s trials)
           python benchmarks/cluster_scale.py --sizes 128 --trial-seconds 20 --merge
Quick:     python benchmarks/cluster_scale.py --quick                   (8 GPUs, 2 s trials, seconds)
"""

from __future__ import annotations

import _thread
import argparse
import collections
import contextlib
import datetime as dt
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pg_scratch import machine, pg_reachable, pg_schema  # noqa: E402

from autopeft.engine.definition import StudyDefinition, make_objectives  # noqa: E402
from autopeft.engine.task import TrialOutcome, TrialTask  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GB = 1024 ** 3
STORE_METHODS = ("create_trial", "start_attempt", "record_result", "end_attempt", "set_trial_status",
                 "add_pareto_snapshot", "silent_trials", "set_study_status")


def sleeping_runner(task: TrialTask, *, seconds: float, beat: bool) -> TrialOutcome:
    """The synthetic trial: sleep ``seconds`` (beating the heartbeat, as a training trial does), then report.

    Runs in a Ray worker; defined here, it travels by value (cloudpickle), and imports only light modules.
    """
    import os
    import time as clock

    from autopeft.engine.worker import _beating
    from autopeft.status import TrialStatus as Status
    from tests.engine.synthetic import objectives

    started = clock.time()
    with _beating(task.heartbeat if beat else None):
        clock.sleep(seconds)
    metrics = {"slept_from": started, "slept_to": clock.time(), "pid": os.getpid()}
    return TrialOutcome(task.number, Status.COMPLETE, task.fidelity, objectives(task.config, task.fidelity), metrics)


def warm_worker(seconds: float) -> int:
    """A Ray task that imports what a trial imports and holds its worker ``seconds``: starts the worker processes."""
    import os
    import time as clock

    import autopeft.engine.ray_executor
    import autopeft.engine.worker
    import autopeft.store  # noqa: F401
    import tests.engine.synthetic  # noqa: F401

    clock.sleep(seconds)
    return os.getpid()


def warm_up(address: str, gpus: int) -> tuple[float, int]:
    """Start a Ray worker process for every GPU (seconds taken, workers started) before the study's clock runs.

    Ray keeps a job's idle workers for its next tasks, so the study measures steady state; the start-up
    (a Python process importing Ray and autopeft per GPU, 2 at a time on 2 cores) is reported beside it.
    """
    import ray

    from autopeft.engine.ray_executor import connect

    connect(address)
    # GPUs in .options(), as RayExecutor does: in @ray.remote they would make Ray end the worker after each task.
    task = ray.remote(max_retries=0)(warm_worker).options(num_cpus=1, num_gpus=1)
    started, pids = time.perf_counter(), set()
    for _ in range(10):
        pids.update(ray.get([task.remote(1.0) for _ in range(gpus)]))
        if len(pids) >= gpus:
            break
    return time.perf_counter() - started, len(pids)


# -- the cluster ------------------------------------------------------------------------------------------------


def start_cluster(gpus: int) -> Any:
    """A head with no resources and one worker node with ``gpus`` CPUs and logical GPUs (tests' cluster class)."""
    from tests.engine.conftest import RayTestCluster, free_port

    class Cluster(RayTestCluster):
        def add_node(self, cpus: int, gpus: int) -> None:
            assert self.base is not None
            process = self._ray("--address", self.address, "--num-cpus", str(cpus), "--num-gpus", str(gpus),
                                *self._node_args(self.base / "w1"))
            if process.wait(timeout=300) != 0:
                raise RuntimeError(f"ray start (worker) failed: {(self.base / 'w1.log').read_text()[-2000:]}")
            self.workers.append("w1")

    base = Path(tempfile.mkdtemp(prefix="apcs", dir="/tmp"))  # short: Ray's socket paths are limited
    cluster = Cluster(base, f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    try:
        cluster.start_head()
        cluster.add_node(gpus, gpus)
    except BaseException:
        stop_cluster(cluster)
        raise
    cluster.start_seconds = time.monotonic() - started
    return cluster


def stop_cluster(cluster: Any) -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    try:
        cluster.stop()  # exactly this cluster's processes (by its temp folder and port), SIGKILL
    finally:
        shutil.rmtree(cluster.base, ignore_errors=True)


def pg_connections() -> tuple[int, int]:
    """(connections open on the server now, max_connections)."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user="postgres", autocommit=True) as conn:
        used = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
        limit = conn.execute("SHOW max_connections").fetchone()
    return int(used[0] if used else 0), int(limit[0] if limit else 100)


class Monitor:
    """Samples the cluster's memory, the machine's available memory and PostgreSQL connections every 2 s;
    interrupts the driver (as Ctrl-C would) when the machine gets below ``min_free`` bytes available."""

    def __init__(self, cluster: Any, min_free: float) -> None:
        self.cluster, self.min_free = cluster, min_free
        self.peak_rss = 0
        self.worker_rss: list[int] = []
        self.peak_workers = 0
        self.min_available = float("inf")
        self.peak_pg = 0
        self.broke: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(2.0):
            rss, workers = 0, []
            for process in self.cluster.processes():
                with contextlib.suppress(psutil.Error):
                    size = process.memory_info().rss
                    rss += size
                    cmdline = process.cmdline()  # a Ray worker retitles itself ray::IDLE, ray::run_on_ray
                    if cmdline and (cmdline[0].startswith("ray::") or "default_worker.py" in " ".join(cmdline)):
                        workers.append(size)
            self.peak_rss = max(self.peak_rss, rss)
            if len(workers) >= self.peak_workers:
                self.peak_workers, self.worker_rss = len(workers), workers
            available = psutil.virtual_memory().available
            self.min_available = min(self.min_available, available)
            with contextlib.suppress(Exception):
                self.peak_pg = max(self.peak_pg, pg_connections()[0])
            if available < self.min_free and self.broke is None:
                self.broke = (f"memory: {available / GB:.1f} GB available with {len(workers)} Ray workers "
                              f"({rss / GB:.1f} GB RSS in the cluster); stopped")
                _thread.interrupt_main()


# -- instrumenting the driver from outside -----------------------------------------------------------------------


class Probe:
    """Timing proxies around the executor, the sampler, the scheduler, the store and the loop's wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: collections.deque[float] = collections.deque()  # results not yet followed by a submit
        self.turnaround: list[float] = []
        self.recorded: list[float] = []  # when each result's write ended
        self.store_s = 0.0
        self.store_calls: collections.Counter[str] = collections.Counter()
        self.propose_s = 0.0
        self.propose_in_scheduler_s = 0.0
        self.scheduler_s = 0.0
        self.wait_s = 0.0
        self.results = 0
        self.submits = 0
        self._depth = 0

    def _timed(self, inner: Any, kind: str, name: str = "") -> Any:
        @functools.wraps(inner)
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            if kind == "scheduler":
                self._depth += 1
            try:
                return inner(*args, **kwargs)
            finally:
                now = time.perf_counter()
                spent = now - started
                with self.lock:
                    if kind == "store":
                        self.store_s += spent
                        self.store_calls[name] += 1
                        if name == "record_result":
                            self.recorded.append(now)
                    elif kind == "propose":
                        self.propose_s += spent
                        if self._depth:
                            self.propose_in_scheduler_s += spent
                    elif kind == "scheduler":
                        self._depth -= 1
                        self.scheduler_s += spent
                    elif kind == "wait":
                        self.wait_s += spent
        return call

    def store(self, store: Any) -> Any:
        for name in STORE_METHODS:
            setattr(store, name, self._timed(getattr(store, name), "store", name))
        return store

    def sampler(self, sampler: Any) -> Any:
        sampler.propose = self._timed(sampler.propose, "propose")
        return sampler

    def scheduler(self, scheduler: Any) -> Any:
        for name in ("suggest", "on_trial_result", "on_trial_error"):
            setattr(scheduler, name, self._timed(getattr(scheduler, name), "scheduler"))
        return scheduler

    def executor(self, executor: Any) -> Any:
        inner = executor.submit

        def arrived(_: Any) -> None:
            with self.lock:
                self.arrived.append(time.perf_counter())
                self.results += 1

        def submit(runner: Any, task: Any) -> Any:
            now = time.perf_counter()
            with self.lock:
                self.submits += 1
                if self.arrived:  # this submit hands the GPU freed by the oldest unanswered result new work
                    self.turnaround.append(now - self.arrived.popleft())
            future = inner(runner, task)
            future.add_done_callback(arrived)
            return future

        executor.submit = submit
        return executor

    @contextlib.contextmanager
    def loop_wait(self) -> Iterator[bool]:
        """Time the loop's wait for results (the rest of its time is the driver's work); False if not found."""
        from autopeft.engine import loop

        inner = getattr(loop, "wait", None)
        if inner is None:
            yield False
            return
        loop.wait = self._timed(inner, "wait")
        try:
            yield True
        finally:
            loop.wait = inner


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def idle_share(spans: list[tuple[float, float]], gpus: int) -> tuple[float | None, float]:
    """1 - busy / (gpus x window) over the window from the first start to the last start; and the window."""
    if len(spans) < 2:
        return None, 0.0
    lo, hi = min(s for s, _ in spans), max(s for s, _ in spans)
    if hi <= lo:
        return None, 0.0
    busy = sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in spans)
    return 1.0 - busy / (gpus * (hi - lo)), hi - lo


def peak_rate(times: list[float], width: float = 1.0) -> float:
    """The most events in any window of ``width`` seconds, per second."""
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] < t - width:
            j += 1
        best = max(best, i - j + 1)
    return best / width


# -- one study ---------------------------------------------------------------------------------------------------


def run_study(cluster: Any, url: str, *, gpus: int, strategy: str, trial_seconds: float, waves: float,
              beat: bool, min_free: float) -> dict[str, Any]:
    from autopeft.engine.lease import FaultPolicy
    from autopeft.engine.loop import Budget, StudyLoop
    from autopeft.engine.ray_executor import RayExecutor
    from autopeft.engine.strategy import make_sampler_for, make_scheduler
    from autopeft.store import Store
    from tests.engine.synthetic import DIMS, MAX_F
    from tests.engine.synthetic import objectives as synthetic

    objectives = make_objectives(("score", "trainable_params"), base_params=2_000_000)
    name = f"scale-{gpus}-{strategy}"
    probe = Probe()
    store = Store(url)
    definition = StudyDefinition(space={"name": "synthetic"}, recipe={"fidelity": {"min": 1, "max": MAX_F}},
                                 objectives=objectives, recipe_dir=".")
    store.create_study(name, space=definition.space_json(), recipe=definition.recipe_json(),
                       objectives=definition.objectives_json(), strategy=strategy, seed=0)
    known = {"trainable_params": lambda c: synthetic(c, MAX_F)["trainable_params"]}  # as the real counter
    sampler = probe.sampler(make_sampler_for(strategy, DIMS, objectives, seed=0, feasible=None, known=known))

    def factory(propose: Any) -> Any:
        return probe.scheduler(make_scheduler(strategy, propose, objectives, min_fidelity=1, max_fidelity=MAX_F,
                                              seed=0))

    warm_s, warm_workers = warm_up(cluster.address, gpus)
    # The sleeping trials never touch CUDA, so one worker process may run trial after trial on any of the node's
    # logical GPUs (a real multi-GPU node gets a fresh process per trial: `reuses_workers_safely`).
    executor = probe.executor(RayExecutor(gpus, address=cluster.address, gpus_per_trial=1, device="cpu",
                                          storage=url, reuse_workers=True))
    assert executor.workers == gpus, (executor.workers, gpus)
    # Without heartbeats a running trial is never beaten again after its start: keep it from looking silent.
    policy = FaultPolicy() if beat else FaultPolicy(heartbeat_grace=max(60.0, 10 * trial_seconds))
    loop = StudyLoop(store=probe.store(store), name=name, definition=definition, scheduler_factory=factory,
                     sampler=sampler, executor=executor,
                     runner=functools.partial(sleeping_runner, seconds=trial_seconds, beat=beat),
                     compile_config=lambda c: {"plan": {}}, budget=Budget(seconds=waves * trial_seconds), policy=policy)
    broke = None
    started = time.perf_counter()
    with Monitor(cluster, min_free) as monitor, probe.loop_wait() as waits_timed:
        try:
            summary = loop.run()
            status = summary.status.value
        except KeyboardInterrupt:
            status, broke = "interrupted", monitor.broke or "interrupted"
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if monitor.broke:
        broke = monitor.broke
    attempts = Store(url).attempts(name)
    results = Store(url).results(name)
    spans = [(a.started_at.timestamp(), a.ended_at.timestamp()) for a in attempts if a.ended_at is not None]
    runner_spans = [(float(r.metrics["slept_from"]), float(r.metrics["slept_to"])) for r in results
                    if "slept_from" in r.metrics]
    idle, window = idle_share(spans, gpus)
    idle_runner, _ = idle_share(runner_spans, gpus)
    first_submit = min((s for s, _ in spans), default=0.0)
    starts = sorted(s for s, _ in runner_spans)
    n = max(1, probe.results)
    busy = (wall - probe.wait_s) if waits_timed else None
    decide = probe.scheduler_s - probe.propose_in_scheduler_s
    store.close()
    ms = 1000.0
    row: dict[str, Any] = {
        "gpus": gpus, "strategy": strategy, "trial_seconds": trial_seconds, "waves": waves, "status": status,
        "trials": len({a.trial_number for a in attempts}), "jobs": len(attempts), "results": len(results),
        "window_s": round(window, 2), "wall_s": round(wall, 1),
        "idle_share": None if idle is None else round(idle, 5),
        "idle_share_runner": None if idle_runner is None else round(idle_runner, 5),
        "ramp_s": round(starts[gpus - 1] - first_submit, 2) if len(starts) >= gpus else None,
        "driver_ms_per_trial": {"median": _r(quantile(probe.turnaround, 0.5), ms),
                                "p90": _r(quantile(probe.turnaround, 0.9), ms),
                                "max": _r(max(probe.turnaround, default=None), ms), "n": len(probe.turnaround)},
        "driver_busy_ms_per_trial": _r(None if busy is None else busy / n, ms),
        "propose_ms_per_trial": _r(probe.propose_s / n, ms), "store_ms_per_trial": _r(probe.store_s / n, ms),
        "decide_ms_per_trial": _r(decide / n, ms), "propose_s_total": round(probe.propose_s, 2),
        "store_trials_per_s": peak_rate(probe.recorded),
        "store_capacity_trials_per_s": round(n / probe.store_s, 1) if probe.store_s else None,
        "store_calls": dict(probe.store_calls), "heartbeats": beat,
        "heartbeats_per_s": round(gpus / 5.0, 1) if beat else 0.0,
        "cluster_rss_peak_mb": round(monitor.peak_rss / 2 ** 20), "ray_workers_peak": monitor.peak_workers,
        "ray_worker_rss_median_mb": round(statistics.median(monitor.worker_rss) / 2 ** 20) if monitor.worker_rss
        else None,
        "min_available_gb": None if monitor.min_available == float("inf") else round(monitor.min_available / GB, 1),
        "pg_connections_peak": monitor.peak_pg,
        "worker_start_s": round(warm_s, 1), "workers_started": warm_workers,
        "cluster_start_s": round(cluster.start_seconds, 1),
    }
    if broke:
        row["broke"] = broke
    return row


def _r(value: float | None, scale: float = 1.0) -> float | None:
    return None if value is None else round(value * scale, 2)


def loop_commit() -> str:
    """The last commit of the study loop (figures before/after a change to it can be told apart)."""
    try:
        out = subprocess.run(["git", "log", "--oneline", "-1", "--", "autopeft/engine/loop.py",
                              "autopeft/engine/strategy.py"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "autopeft/engine/loop.py",
                                "autopeft/engine/strategy.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not dirty.stdout.strip():
        return out.stdout.strip()
    import hashlib

    files = [ROOT / "autopeft/engine" / n for n in ("loop.py", "strategy.py", "proposals.py")]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files if f.exists())).hexdigest()[:12]
    return f"{out.stdout.strip()} (with uncommitted changes; loop.py+strategy.py+proposals.py sha256 {digest})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 GPUs, 2 s trials, 2 waves, hyperband only")
    parser.add_argument("--sizes", default=None, help="comma-separated logical GPU counts (default 8,32,128)")
    parser.add_argument("--strategies", default=None, help="comma-separated (default hyperband,mobo-hyperband)")
    parser.add_argument("--trial-seconds", type=float, default=None, help="each trial's sleep (default 60)")
    parser.add_argument("--waves", type=float, default=None, help="trial lengths of work per study (default 3)")
    parser.add_argument("--no-heartbeat", action="store_true", help="trials do not beat their heartbeat")
    parser.add_argument("--min-free-gb", type=float, default=4.0, help="stop a size below this much free memory")
    parser.add_argument("--storage", default=PG_URL, help="PostgreSQL URL (a throwaway schema is made in it)")
    parser.add_argument("--merge", action="store_true", help="keep the rows of other sizes already in --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cluster_scale.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("8" if args.quick else "8,32,128")).split(",")]
    strategies = (args.strategies or ("hyperband" if args.quick else "hyperband,mobo-hyperband")).split(",")
    trial_seconds = args.trial_seconds or (2.0 if args.quick else 60.0)
    waves = args.waves or (2.0 if args.quick else 3.0)
    out = args.out.with_name(args.out.stem + "_quick.json") if args.quick else args.out
    reachable, version = pg_reachable(args.storage)
    if not reachable:
        print(f"PostgreSQL is not reachable at {args.storage}: {version}", file=sys.stderr)
        return 2
    try:
        import ray
    except ImportError:
        print("Ray is not installed (pip install 'autopeft[ray]')", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    report: dict[str, Any] = {"benchmark": "cluster_scale", "quick": args.quick, "argv": sys.argv[1:],
                              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "machine": {**machine(), "ray": ray.__version__, "postgresql": version,
                                          "memory_gb": round(_memory() / GB, 1)},
                              "loop_commit": loop_commit(), "rows": []}
    if args.merge and out.exists():
        kept = json.loads(out.read_text())
        report["rows"] = [r for r in kept.get("rows", []) if r["gpus"] not in sizes]
        report["earlier"] = {k: kept.get(k) for k in ("date", "loop_commit", "machine")}
    rows: list[dict[str, Any]] = report["rows"]
    for gpus in sizes:
        used, limit = pg_connections()
        # Each trial process holds one connection for its heartbeats; leave room for the driver and others.
        beat = not args.no_heartbeat and gpus + 10 <= limit - used
        note = None if beat or args.no_heartbeat else (
            f"heartbeats off: {gpus} trial processes would hold {gpus} PostgreSQL connections, the server has "
            f"{limit - used} free (max_connections {limit})")
        print(f"== {gpus} GPUs: starting the cluster" + (f" ({note})" if note else ""), flush=True)
        cluster = start_cluster(gpus)
        try:
            for strategy in strategies:
                with pg_schema(args.storage, "autopeft_scale") as url:
                    row = run_study(cluster, url, gpus=gpus, strategy=strategy, trial_seconds=trial_seconds,
                                    waves=waves, beat=beat, min_free=args.min_free_gb * GB)
                if note:
                    row["note"] = note
                row["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
                rows.append(row)
                print(_line(row), flush=True)
                _write(out, report)  # row by row: a size that breaks the machine leaves the others written
                if row.get("broke"):
                    break
        finally:
            stop_cluster(cluster)
    print(f"\n{'gpus':>5s} {'strategy':15s} {'trial s':>7s} {'jobs':>5s} {'idle':>7s} {'idle(run)':>9s} "
          f"{'drv ms p50/p90':>16s} {'busy ms':>8s} {'prop':>6s} {'store':>6s} {'store/s':>8s} {'cap/s':>6s} "
          f"{'RSS MB':>7s}")
    for row in rows:
        print(_line(row))
    _write(out, report)
    print(f"wrote {out}")
    return 0


def _line(row: dict[str, Any]) -> str:
    def f(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    d = row["driver_ms_per_trial"]
    return (f"{row['gpus']:5d} {row['strategy']:15s} {row['trial_seconds']:7g} {row['jobs']:5d} "
            f"{f(row['idle_share'], '7.2%')} {f(row['idle_share_runner'], '9.2%')} "
            f"{f(d['median'], '7.0f')}/{f(d['p90'], '<8.0f')} {f(row['driver_busy_ms_per_trial'], '8.1f')} "
            f"{f(row['propose_ms_per_trial'], '6.1f')} {f(row['store_ms_per_trial'], '6.1f')} "
            f"{f(row['store_trials_per_s'], '8.1f')} {f(row['store_capacity_trials_per_s'], '6.0f')} "
            f"{row['cluster_rss_peak_mb']:7d}" + (f"  BROKE: {row['broke']}" if row.get("broke") else ""))


def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _memory() -> float:
    import psutil

    return float(psutil.virtual_memory().total)


if __name__ == "__main__":
    raise SystemExit(main())
