"""A real local Ray cluster for the Ray executor's tests, started once per test session (only if asked for).

A head with no CPU and no GPU (so no trial runs on it) and two worker nodes with 1 CPU and 1 logical GPU
each (Ray hands out GPU ids without hardware), all on this machine, each node with its own temp folder,
ports and runs cache (`AUTOPEFT_RUNS_CACHE`: no node reads another's local copy of a checkpoint), started
with the `ray start` CLI as on a real cluster. The head runs the dashboard (its job server: `ray job
submit`) and a Ray Client server (``ray://``). Teardown ends exactly the processes of this cluster (found
by its temp folder and GCS address, and their children), not every Ray process of the machine as `ray
stop --force` would: other test sessions may run their own.

``AUTOPEFT_TEST_RAY_ADDRESS=HOST:PORT`` uses a running cluster of that shape instead (not stopped here).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from autopeft.train.storage import CACHE_ENV

REPO = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 80_000_000  # Ray's minimum is ~75 MB; the default (30% of memory per node) is far more


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    # RAY_AUTH_MODE: a ~/.ray/auth_token left by any local ray.init() would turn token authentication on
    # for the head (`ray start --head` picks it up) but not for the worker nodes, which then cannot join.
    # RAY_health_check_*: the head declares a killed node dead within ~3-4 s (a refused check fails at once;
    # a slow answer has 2 s), not Ray's default ~15-30 s, so a node-kill test sees the cluster shrink while
    # its short study still runs (a loaded CI machine once finished the study first).
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="2000",
               RAY_health_check_failure_threshold="3", PYTHONPATH=os.pathsep.join(
                   [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))  # workers import tests.engine.faulty
    return env


@dataclass
class RayTestCluster:
    """A local multi-node Ray cluster: ``address`` is the head's GCS address (HOST:PORT)."""

    base: Path | None  # None: a cluster this fixture did not start
    address: str
    start_seconds: float = 0.0
    workers: list[str] = field(default_factory=list)  # temp folders of the live worker nodes started here
    started: int = 0  # worker nodes ever started: a replacement gets a new name, never a dead node's
    dashboard: str | None = None  # http://HOST:PORT of the head's dashboard (Ray Jobs), where started here
    client: str | None = None  # ray://HOST:PORT of the head's Ray Client server, where started here

    def _ray(self, *args: str, cache: Path | None = None) -> subprocess.Popen[bytes]:
        """`ray start ARGS`; a worker node gets its own runs cache (``cache``), as a node on another machine has."""
        ray = str(Path(sys.executable).with_name("ray"))
        log = open(Path(args[args.index("--temp-dir") + 1]).with_suffix(".log"), "wb")  # noqa: SIM115
        env = _env() if cache is None else {**_env(), CACHE_ENV: str(cache)}
        return subprocess.Popen([ray, "start", *args], env=env, stdout=log, stderr=subprocess.STDOUT)

    def _node_args(self, temp: Path) -> list[str]:
        return ["--temp-dir", str(temp), "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats",
                "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port())]

    def start_head(self) -> None:
        assert self.base is not None
        port, dashboard, client = int(self.address.rsplit(":", 1)[1]), free_port(), free_port()
        head = self._ray("--head", "--port", str(port), "--num-cpus", "0", "--num-gpus", "0",
                         "--include-dashboard=true", "--dashboard-host", "127.0.0.1",
                         "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
                         *self._node_args(self.base / "head"))
        if head.wait(timeout=180) != 0:
            raise RuntimeError(f"ray start --head failed: {(self.base / 'head.log').read_text()[-2000:]}")
        self.dashboard, self.client = f"http://127.0.0.1:{dashboard}", f"ray://127.0.0.1:{client}"

    def add_workers(self, count: int) -> list[str]:
        """Start ``count`` worker nodes (1 CPU, 1 GPU each) at once; returns their temp folders."""
        assert self.base is not None
        names = [f"w{self.started + i + 1}" for i in range(count)]
        self.started += count
        started = [self._ray("--address", self.address, "--num-cpus", "1", "--num-gpus", "1",
                             *self._node_args(self.base / name), cache=self.base / name / "runs-cache")
                   for name in names]
        for name, process in zip(names, started, strict=True):
            if process.wait(timeout=180) != 0:
                raise RuntimeError(f"ray start ({name}) failed: {(self.base / f'{name}.log').read_text()[-2000:]}")
        self.workers += names
        return names

    def node_of(self, name: str) -> str:
        """The Ray node id of worker node ``name`` (from its raylet's command line)."""
        raylet = self.raylet(name)
        for arg in raylet.cmdline():
            if arg.startswith("--node_id="):
                return arg.split("=", 1)[1]
        raise AssertionError(f"no --node_id on the raylet of {name}")

    def raylet(self, name: str) -> psutil.Process:
        assert self.base is not None
        marker = f"{self.base / name}/"
        for process in psutil.process_iter(["name", "cmdline"]):
            cmdline = process.info["cmdline"] or []
            if cmdline and cmdline[0].endswith("/raylet") and any(marker in arg for arg in cmdline):
                return process
        raise AssertionError(f"no raylet for node {name}")

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster: those naming its temp folder or GCS address, and their children."""
        assert self.base is not None
        marks = (str(self.base), self.address.rsplit(":", 1)[1])
        roots = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if process.pid != os.getpid() and "ray" in cmdline and (marks[0] in cmdline or f":{marks[1]}" in cmdline):
                roots.append(process)
        found = {p.pid: p for p in roots}
        for process in roots:
            with contextlib.suppress(psutil.NoSuchProcess):
                found.update({c.pid: c for c in process.children(recursive=True)})
        return list(found.values())

    def stop(self) -> None:
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(processes, timeout=20)
        assert not alive, f"Ray processes left running: {alive}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'autopeft[ray]')")
    if os.environ.get("AUTOPEFT_TEST_RAY_ADDRESS"):
        yield RayTestCluster(None, os.environ["AUTOPEFT_TEST_RAY_ADDRESS"])
        return
    # Short: Ray's unix sockets live under the temp folder, and a socket path may not exceed 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="aprt", dir="/tmp"))
    cluster = RayTestCluster(base, f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    try:
        cluster.start_head()
        cluster.add_workers(2)
        cluster.start_seconds = time.monotonic() - started
        yield cluster
    finally:
        _disconnect()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
