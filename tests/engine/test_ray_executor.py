"""The Ray executor: its checks (no cluster), and studies on a real local cluster (tests/engine/conftest.py).

On the cluster (a head with no resources, two worker nodes with 1 CPU and 1 logical GPU each): a study
of the synthetic objective through the real loop on PostgreSQL spreads over both nodes with one GPU id
per trial, read back from the attempts' worker names; a trial past its timeout is stopped; a worker
node whose raylet is killed while it holds a trial loses only that attempt, which runs again on the
other node, and the budget is counted once; a node killed while it holds a promoted trial of a real Hyperband
study (checkpoints under a shared `file://` URI) loses that job, which resumes on the other node from the
checkpoint the dead node stored. The executor contract (test_executors.py) runs it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from autopeft.engine.executors import TrialTimeoutError, WorkerLostError, make_executor
from autopeft.engine.lease import FaultPolicy
from autopeft.engine.loop import budget_spent
from autopeft.engine.ray_executor import (
    ClusterInfo,
    NodeInfo,
    RayExecutor,
    check_address,
    check_cluster,
    check_gpus_per_trial,
    reuses_workers_safely,
)
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.errors import ConfigError
from autopeft.status import AttemptOutcome, TrialStatus
from autopeft.store import Store, StudyStatus
from tests.engine.conftest import REPO, RayTestCluster
from tests.engine.faulty import WithOptions, dying_runner, echo_runner, hanging_runner, raising_runner
from tests.engine.synthetic import MAX_F
from tests.engine.test_faults import _outcomes, _run
from tests.store_fixtures import pg_schema

# -- checks, no cluster -------------------------------------------------------------------------------------

TWO_NODES = ClusterInfo("h:1", (NodeInfo("a" * 56, "127.0.0.1", 4, 2), NodeInfo("b" * 56, "127.0.0.1", 2, 0)))


def test_trials_at_once_is_what_every_node_holds() -> None:
    assert TWO_NODES.capacity(1, 1) == 2  # only node a has GPUs
    assert TWO_NODES.capacity(1, 0.5) == 4
    assert TWO_NODES.capacity(1, 0) == 6
    assert TWO_NODES.capacity(3, 0) == 1  # a trial never spans nodes


def test_gpus_per_trial_defaults_to_one_where_the_cluster_has_gpus() -> None:
    assert check_cluster(TWO_NODES, storage=None, gpus_per_trial=None, cpus_per_trial=1) == (1.0, 2)
    no_gpus = ClusterInfo(None, (NodeInfo("c" * 56, "127.0.0.1", 2, 0),))
    assert check_cluster(no_gpus, storage=None, gpus_per_trial=None, cpus_per_trial=1) == (0.0, 2)


def test_a_trial_no_node_can_hold_is_one_line() -> None:
    with pytest.raises(ConfigError, match="no node of the cluster can hold one trial of 1 CPU and 3 GPU"):
        check_cluster(TWO_NODES, storage=None, gpus_per_trial=3, cpus_per_trial=1)


def test_sqlite_is_refused_only_with_nodes_on_other_machines() -> None:
    elsewhere = ClusterInfo(None, (*TWO_NODES.nodes, NodeInfo("d" * 56, "203.0.113.9", 8, 8)))
    with pytest.raises(ConfigError, match=r"nodes on other machines \(203.0.113.9\).*use PostgreSQL"):
        check_cluster(elsewhere, storage="sqlite:///x.db", gpus_per_trial=1, cpus_per_trial=1)
    check_cluster(elsewhere, storage="postgresql+psycopg://u@db/x", gpus_per_trial=1, cpus_per_trial=1)
    check_cluster(TWO_NODES, storage="sqlite:///x.db", gpus_per_trial=1, cpus_per_trial=1)  # all on this machine


@pytest.mark.parametrize("value", [-1, float("nan"), 1.5])
def test_bad_gpus_per_trial(value: float) -> None:
    with pytest.raises(ConfigError, match="gpus-per-trial"):
        check_gpus_per_trial(value)


@pytest.mark.parametrize("address", ["head", "head:port", ":6379", "ray://head:99999"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ConfigError, match="not a Ray address"):
        check_address(address)


# -- on the local cluster ------------------------------------------------------------------------------------


def _nodes(store: Store, name: str) -> dict[str, set[str]]:
    """Node id (8 hex) -> the GPU ids its reported attempts held, from `ray:<ip>/<node>:<pid>:gpu<ids>`."""
    found: dict[str, set[str]] = {}
    for attempt in store.attempts(name):
        if attempt.outcome is AttemptOutcome.REPORTED:
            assert attempt.worker is not None and attempt.worker.startswith("ray:"), attempt.worker
            _, where, _pid, gpus = attempt.worker.split(":")
            assert gpus.startswith("gpu") and len(gpus[3:].split(",")) == 1, f"not one GPU id: {attempt.worker}"
            found.setdefault(where.split("/")[1], set()).add(gpus[3:])
    return found


@pytest.mark.slow
def test_a_study_on_postgresql_spreads_over_both_nodes_one_gpu_each(ray_cluster: RayTestCluster) -> None:
    with pg_schema() as (user, schema):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        store = Store(url)
        executor = make_executor("ray", None, options={"address": ray_cluster.address, "storage": url})
        assert isinstance(executor, RayExecutor)
        assert (executor.workers, executor.gpus_per_trial) == (2, 1.0)  # what the two nodes hold
        started = time.monotonic()
        summary = _run(store, "r", WithOptions(echo_runner, {"sleep": 1.0}), executor, budget=6,
                       policy=FaultPolicy())
        seconds = time.monotonic() - started
        assert summary.status is StudyStatus.COMPLETE
        assert [t.status for t in store.trials("r")] == [TrialStatus.COMPLETE] * 6
        nodes = _nodes(store, "r")
        if ray_cluster.base is not None:
            assert set(nodes) == {ray_cluster.node_of(name)[:8] for name in ray_cluster.workers}
        assert len(nodes) == 2, nodes
        assert seconds < 6 * 1.0 + 20  # two at a time, not one


@pytest.mark.slow
def test_workers_are_reused_only_where_a_reused_process_cannot_hold_the_wrong_gpu() -> None:
    one_gpu_nodes = ClusterInfo(None, (NodeInfo("a" * 56, "127.0.0.1", 4, 1), NodeInfo("b" * 56, "127.0.0.1", 4, 1)))
    assert reuses_workers_safely(one_gpu_nodes, 1.0) and reuses_workers_safely(one_gpu_nodes, 0.5)
    assert reuses_workers_safely(TWO_NODES, 0.0)  # CPU trials: nothing to hold
    assert not reuses_workers_safely(TWO_NODES, 1.0) and not reuses_workers_safely(TWO_NODES, 0.5)


def test_without_reuse_each_trial_gets_a_fresh_worker_process(ray_cluster: RayTestCluster) -> None:
    executor = RayExecutor(1, address=ray_cluster.address, reuse_workers=False)
    try:
        pids = [executor.submit(echo_runner, TrialTask(study="s", number=n, config={"x": 0.5, "y": 0.5},
                                                       trial_config=None, recipe={}, recipe_dir=".", fidelity=1))
                .result(timeout=120).metrics["pid"] for n in range(2)]
        assert pids[0] != pids[1]
    finally:
        executor.shutdown()


def test_a_trial_past_the_timeout_is_stopped_on_the_cluster(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    # The timeout counts from the trial's start on its worker (a worker's start-up is not counted).
    executor = RayExecutor(1, address=ray_cluster.address, trial_timeout=3.0)
    try:
        hung = executor.submit(hanging_runner, TrialTask(study="s", number=0, config={"x": 0.5, "y": 0.5},
                                                         trial_config=None, recipe={}, recipe_dir=".", fidelity=3,
                                                         options={"hang_on": [0], "pid_file": str(tmp_path / "p")}))
        with pytest.raises(TrialTimeoutError, match="3 s"):
            hung.result(timeout=60)
        assert (tmp_path / "p").exists(), "the trial had not started within its timeout"
        pid = int((tmp_path / "p").read_text())
        psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        executor.shutdown(cancel=True)


@pytest.mark.slow
def test_the_trial_timeout_counts_from_the_start_on_a_worker_not_from_submission(ray_cluster: RayTestCluster,
                                                                                 tmp_path: Path) -> None:
    """Four trials of 3 s on two GPUs with a 4 s timeout: the two queued behind the first two still finish.

    Each GPU runs two trials one after the other, so the second of each is done 6 s or more after its
    submission (plus a worker's start-up): a timer started at submission would have stopped it at 4 s.
    """
    executor = RayExecutor(address=ray_cluster.address, trial_timeout=4.0)
    try:
        submitted = time.monotonic()
        futures = [executor.submit(echo_runner, TrialTask(study="s", number=i, config={"x": 0.5, "y": 0.5},
                                                          trial_config=None, recipe={}, recipe_dir=".", fidelity=3,
                                                          options={"sleep": 3.0}))
                   for i in range(4)]
        outcomes = [f.result(timeout=120) for f in futures]
        assert [o.number for o in outcomes] == [0, 1, 2, 3] and all(o.ok for o in outcomes)
        assert time.monotonic() - submitted > 4.0 + 2.0  # the last ones did wait longer than the timeout
        assert len({o.worker.split(":")[1].split("/")[1] for o in outcomes if o.worker}) == 2  # on both nodes
    finally:
        executor.shutdown(cancel=True)


@pytest.mark.slow
def test_without_streaming_tasks_the_timeout_counts_from_submission(ray_cluster: RayTestCluster) -> None:
    """What Ray Client gets (it has no streaming generators): plain tasks, the timer started at submission.

    The timeout covers a fresh worker's start-up too (imports: over 3 s on a loaded 2-core CI machine)."""
    executor = RayExecutor(1, address=ray_cluster.address, trial_timeout=15.0)
    executor._streaming = False
    try:
        def task(number: int, **options: Any) -> TrialTask:
            return TrialTask(study="s", number=number, config={"x": 0.5, "y": 0.5}, trial_config=None, recipe={},
                             recipe_dir=".", fidelity=3, options=options)

        assert executor.submit(echo_runner, task(0)).result(timeout=60).ok
        with pytest.raises(TrialTimeoutError, match="15 s"):
            executor.submit(hanging_runner, task(1, hang_on=[1])).result(timeout=90)
    finally:
        executor.shutdown(cancel=True)


@pytest.mark.slow
def test_with_a_timeout_a_raising_trial_and_a_dead_worker_are_told_apart(ray_cluster: RayTestCluster) -> None:
    """The streaming tasks a timeout uses report as the plain ones: the trial's own error, or a lost worker."""
    executor = RayExecutor(address=ray_cluster.address, trial_timeout=60.0)
    try:
        def task(number: int) -> TrialTask:
            return TrialTask(study="s", number=number, config={"x": 0.5, "y": 0.5}, trial_config=None, recipe={},
                             recipe_dir=".", fidelity=3)

        raised, died = executor.submit(raising_runner, task(0)), executor.submit(dying_runner, task(1))
        with pytest.raises(RuntimeError, match="boom"):
            raised.result(timeout=120)
        with pytest.raises(WorkerLostError, match="worker process died"):
            died.result(timeout=120)
        assert executor.submit(echo_runner, task(2)).result(timeout=120).ok
    finally:
        executor.shutdown(cancel=True)


@pytest.mark.slow
def test_study_run_with_executor_ray_trains_real_trials_on_the_cluster(ray_cluster: RayTestCluster, tmp_path: Path,
                                                                       tiny_model_dir: Path) -> None:
    """The CLI end to end: a tiny BERT on the demo task, SQLite beside it (every node is on this machine)."""
    import yaml
    from typer.testing import CliRunner

    from autopeft.cli import app
    from tests.cli.test_study import TINY_SPACE
    from tests.conftest import tiny_recipe_dict

    recipe, space, url = tmp_path / "recipe.yaml", tmp_path / "space.yaml", f"sqlite:///{tmp_path / 's.db'}"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=6, threads=1)), encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    result = CliRunner().invoke(app, ["study", "run", "--space", str(space), "--trial", str(recipe), "--storage", url,
                                      "--name", "c", "--strategy", "random", "--budget", "2", "--quiet",
                                      "--executor", "ray", "--ray-address", ray_cluster.address])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "2 worker(s)" in result.stderr  # what the two nodes hold
    store = Store(url)
    assert [t.status for t in store.trials("c")] == [TrialStatus.COMPLETE] * 2
    assert len(_nodes(store, "c")) >= 1  # ray workers with one GPU id each
    assert all((tmp_path / "autopeft_runs" / "c" / f"trial_{n}").is_dir() for n in (0, 1))  # checkpoints


@pytest.mark.slow
def test_shutdown_with_cancel_ends_the_running_tasks(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    """What Ctrl-C on the driver does through the loop: the running Ray tasks are cancelled, their processes end."""
    executor = RayExecutor(address=ray_cluster.address)
    futures = [executor.submit(echo_runner, TrialTask(study="s", number=i, config={"x": 0.5, "y": 0.5},
                                                      trial_config=None, recipe={}, recipe_dir=".", fidelity=3,
                                                      options={"sleep": 600, "pid_file": str(tmp_path / f"p{i}")}))
               for i in range(2)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"p{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int((tmp_path / f"p{i}").read_text()) for i in range(2)]
    executor.shutdown(cancel=True)
    assert all(f.cancelled() for f in futures)
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=15)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "a cancelled trial's process lives on"


@pytest.mark.slow
def test_tasks_die_with_their_killed_driver(ray_cluster: RayTestCluster, tmp_path: Path) -> None:
    """SIGKILL of the driver: Ray ends its job's tasks, so none trains on beside a resumed study."""
    script = textwrap.dedent(f"""
        import time
        from autopeft.engine.ray_executor import RayExecutor
        from autopeft.engine.task import TrialTask
        from tests.engine.faulty import echo_runner
        executor = RayExecutor(2, address={ray_cluster.address!r})
        for i in range(2):
            options = {{"sleep": 600, "pid_file": r"{tmp_path}/w%d" % i}}
            executor.submit(echo_runner, TrialTask(study="s", number=i, config={{"x": 0.5, "y": 0.5}},
                            trial_config=None, recipe={{}}, recipe_dir=".", fidelity=3, options=options))
        time.sleep(600)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while not all((tmp_path / f"w{i}").exists() for i in range(2)) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int((tmp_path / f"w{i}").read_text()) for i in range(2)]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "a task outlived its killed driver"
    finally:
        driver.kill()


def marked_runner(task: TrialTask) -> TrialOutcome:
    """`echo_runner` that first leaves `<folder>/<trial>-<pid>`, so a test can tell where each job runs."""
    Path(task.options["folder"], f"{task.number}-{os.getpid()}").touch()
    return echo_runner(task)


@pytest.mark.slow
def test_a_node_killed_while_it_holds_a_trial_loses_only_that_attempt(ray_cluster: RayTestCluster,
                                                                       tmp_path: Path) -> None:
    if ray_cluster.base is None:
        pytest.skip("kills a node: needs the cluster this test session started")
    victim = ray_cluster.workers[0]
    raylet = ray_cluster.raylet(victim)
    killed: dict[str, Any] = {}

    def kill_when_it_holds_a_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for mark in tmp_path.iterdir():
                number, pid = (int(part) for part in mark.name.split("-"))
                try:
                    on_victim = psutil.Process(pid).ppid() == raylet.pid
                except psutil.NoSuchProcess:
                    continue
                if on_victim:
                    raylet.kill()  # SIGKILL: the node is gone, its worker with it
                    killed.update(trial=number, pid=pid, at=time.monotonic())
                    while time.monotonic() < deadline and "shrank" not in killed:
                        if executor.workers == 1:  # the loop starts one trial at a time on the one node left
                            killed["shrank"] = time.monotonic() - killed["at"]
                        time.sleep(0.2)
                    return
            time.sleep(0.1)

    watcher = threading.Thread(target=kill_when_it_holds_a_trial, daemon=True)
    try:
        with pg_schema() as (user, schema):
            url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
            store = Store(url)
            executor = RayExecutor(address=ray_cluster.address, storage=url)
            assert executor.workers == 2
            watcher.start()
            summary = _run(store, "k", WithOptions(marked_runner, {"sleep": 3.0, "folder": str(tmp_path)}),
                           executor, budget=6, policy=FaultPolicy())
            watcher.join(timeout=5)
            assert killed, "no trial ran on the node to kill"
            assert "shrank" in killed, "the executor still counted the dead node's GPU"
            assert summary.status is StudyStatus.COMPLETE
            trials = store.trials("k")
            assert [t.status for t in trials] == [TrialStatus.COMPLETE] * 6  # every trial accounted for
            history = _outcomes(store, "k")
            assert history[killed["trial"]] == [AttemptOutcome.LOST, AttemptOutcome.REPORTED]
            assert all(h == [AttemptOutcome.REPORTED] for n, h in history.items() if n != killed["trial"])
            assert budget_spent(store.results("k"), MAX_F) == pytest.approx(6.0)  # the lost job cost nothing
            assert len(store.results("k")) == 6
            survivor = ray_cluster.node_of(ray_cluster.workers[1])[:8]
            retried = [a for a in store.attempts("k") if a.trial_number == killed["trial"]][-1]
            assert retried.worker is not None and f"/{survivor}:" in retried.worker  # ran again on the other node
    finally:
        ray_cluster.workers.remove(victim)
        ray_cluster.add_workers(1)  # two live worker nodes again for the tests after this one



#: The promoted-trial study: rungs of 500, 1,000 and 2,000 steps of the tiny BERT (eta 2), so a promoted
#: job (model load, then 500-1,000 steps) runs a few seconds: long enough for the watcher to see it and kill its node.
RUNGS = (500, 1000, 2000)


@pytest.mark.slow
def test_a_node_killed_while_it_holds_a_promoted_trial_resumes_it_from_the_shared_checkpoint(
        ray_cluster: RayTestCluster, tmp_path: Path, tiny_model_dir: Path) -> None:
    """Real training on the cluster, checkpoints under a `file://` runs URI every node sees (each node has its
    own local cache): the node running a promoted job (one that continues a checkpoint) is killed; the job is
    lost and runs again on the other node from the checkpoint the dead node stored, not from zero."""
    import yaml

    from tests.cli.test_study import TINY_SPACE
    from tests.conftest import tiny_recipe_dict
    from tests.engine.test_faults import _check_consistent, _cli

    if ray_cluster.base is None:
        pytest.skip("kills a node: needs the cluster this test session started")
    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=RUNGS[0], fmax=RUNGS[-1], threads=1)),
                      encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    raylets = {name: ray_cluster.raylet(name) for name in ray_cluster.workers}
    killed: dict[str, Any] = {}
    with pg_schema() as (user, schema):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        store = Store(url)
        driver = _cli("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "p",
                      "--strategy", "hyperband", "--eta", "2", "--budget", "3", "--storage", url, "-q",
                      "--executor", "ray", "--ray-address", ray_cluster.address,
                      "--runs-dir", (tmp_path / "shared-runs").as_uri())
        try:
            deadline = time.monotonic() + 300
            while not killed and driver.poll() is None and time.monotonic() < deadline:
                for attempt in store.attempts("p") if _has_attempts(store, "p") else []:
                    if attempt.outcome is not AttemptOutcome.RUNNING or not attempt.resume_from or not attempt.worker:
                        continue
                    node = _node_running(raylets, int(attempt.worker.split(":")[1]))
                    if node is not None:
                        _kill_node(raylets[node])  # the node is gone, with the job and its local cache copy
                        killed.update(node=node, trial=attempt.trial_number, resume_from=attempt.resume_from)
                        break
                time.sleep(0.1)
            _, err = driver.communicate(timeout=600)
        finally:
            driver.kill()
            for name in [n for n in ray_cluster.workers if not raylets[n].is_running()]:
                ray_cluster.workers.remove(name)
                ray_cluster.add_workers(1)  # two live worker nodes again for the tests after this one
        assert killed, "no promoted job ran long enough on a worker node to be killed there"
        assert driver.returncode == 0, err.decode()
        _check_consistent(store, "p", 3.0)  # every trial finished once, the budget counted once, no attempt open
        jobs = [a for a in store.attempts("p") if a.trial_number == killed["trial"]]
        lost = [a for a in jobs if a.outcome is AttemptOutcome.LOST]
        assert [a.resume_from for a in lost] == [killed["resume_from"]], jobs
        retry = jobs[jobs.index(lost[0]) + 1]
        assert (retry.outcome, retry.resume_from, retry.fidelity) == (AttemptOutcome.REPORTED, lost[0].resume_from,
                                                                     lost[0].fidelity)
        survivor = next(ray_cluster.node_of(n) for n in raylets if n != killed["node"])[:8]
        assert retry.worker is not None and f"/{survivor}:" in retry.worker  # it ran again on the other node
        result = next(r for r in store.results("p") if r.trial_number == killed["trial"]
                      and r.fidelity == retry.fidelity)
        # Continued from the checkpoint the dead node stored under the shared URI, at the rung it had reached.
        assert result.metrics["start_step"] == killed["resume_from"] > 0
        assert result.metrics["steps"] == retry.fidelity


def _has_attempts(store: Store, name: str) -> bool:
    from tests.engine.test_faults import _has_rows

    return _has_rows(store, name, "attempts")


def _kill_node(raylet: psutil.Process) -> None:
    """SIGKILL a node's worker processes and its raylet at once, as a machine that loses power. The raylet alone
    is not enough: its workers notice a moment later, and a short job can finish and report in that moment."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for process in [*raylet.children(recursive=True), raylet]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def _node_running(raylets: dict[str, psutil.Process], pid: int) -> str | None:
    """The worker node (by name) whose raylet is the parent of process ``pid``, if any is."""
    try:
        parent = psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None
    return next((name for name, raylet in raylets.items() if raylet.pid == parent), None)


# -- the CLI as a process: Ctrl-C and a killed driver, on PostgreSQL ----------------------------------------

#: Steps per trial of the tiny BERT (~2.5 s of training here): long enough for a signal to land while both trials train.
LONG_STEPS = 1200


def _cli_files(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    import yaml

    from tests.cli.test_study import TINY_SPACE
    from tests.conftest import tiny_recipe_dict

    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(model_dir, fmin=LONG_STEPS, fmax=LONG_STEPS, threads=1)),
                      encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    return recipe, space


def _ray_cli(cluster: RayTestCluster, url: str, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    from tests.engine.test_faults import _cli

    return _cli(*args, "--storage", url, "--executor", "ray", "--ray-address", cluster.address, "-q",
                "--runs-dir", str(tmp_path / "runs"))


def _ray_pids_running(store: Store, name: str) -> dict[int, int]:
    """Trial number -> the pid of the Ray worker that trains it: running attempts that sent a heartbeat.

    A heartbeat names the worker ``host:pid:gpu<ids>`` (the outcome then ``ray:<ip>/<node>:<pid>:gpu<ids>``).
    """
    return {a.trial_number: int(a.worker.split(":")[2 if a.worker.startswith("ray:") else 1])
            for a in store.attempts(name) if a.outcome is AttemptOutcome.RUNNING and a.worker}


def _both_training(store: Store, name: str) -> dict[int, int]:
    from tests.engine.test_faults import _has_rows

    return _ray_pids_running(store, name) if _has_rows(store, name, "attempts") else {}


def _gone(pids: Any, within: float) -> list[int]:
    """The pids still alive (not zombies) after ``within`` seconds."""
    from tests.engine.test_faults import _alive

    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _resume_to_the_end(cluster: RayTestCluster, url: str, tmp_path: Path, name: str, *extra: str) -> None:
    from tests.engine.test_faults import _check_consistent

    driver = _ray_cli(cluster, url, tmp_path, "study", "resume", name, *extra)
    _, err = driver.communicate(timeout=180)
    assert driver.returncode == 0, err.decode()
    store = Store(url)
    _check_consistent(store, name, 2.0)  # every trial finished, once; the budget counted once; no attempt open
    assert len(store.results(name)) == 2
    assert budget_spent(store.results(name), LONG_STEPS) == pytest.approx(2.0)
    history = _outcomes(store, name)
    assert history == {n: [AttemptOutcome.INTERRUPTED, AttemptOutcome.REPORTED] for n in (0, 1)}, history


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "sigkill"])
def test_a_stopped_cli_driver_leaves_a_study_that_resume_finishes(stop: str, ray_cluster: RayTestCluster,
                                                                   tmp_path: Path, tiny_model_dir: Path) -> None:
    """`study run --executor ray` as a process, stopped while both trials train on the cluster.

    Ctrl-C (SIGINT): the driver pauses the study, puts the running trials back to waiting, closes their
    attempts as interrupted and cancels their Ray tasks (`ray.cancel(force=True)`), then exits 130.
    SIGKILL: nothing is written, Ray ends the dead driver's tasks, and `study resume --force` takes the
    study over (the dead driver's attempts are closed as interrupted). Either way `study resume` finishes
    the study with both trials, each counted once.
    """
    recipe, space = _cli_files(tmp_path, tiny_model_dir)
    with pg_schema() as (user, schema):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        store, name = Store(url), "stopped"
        driver = _ray_cli(ray_cluster, url, tmp_path, "study", "run", "--space", str(space), "--trial", str(recipe),
                          "--name", name, "--strategy", "random", "--budget", "2")
        try:
            deadline = time.monotonic() + 90
            while len(pids := _both_training(store, name)) < 2 and time.monotonic() < deadline:
                assert driver.poll() is None, driver.communicate()[1].decode()
                time.sleep(0.2)
            assert len(pids) == 2, "two trials were not training on the cluster within 90 s"
            driver.send_signal(signal.SIGINT if stop == "ctrl-c" else signal.SIGKILL)
            _, err = driver.communicate(timeout=60)
        finally:
            driver.kill()
        assert not _gone(pids.values(), 30), "a Ray task of the stopped driver is still running"
        assert all(t.status is TrialStatus.RUNNING or t.status is TrialStatus.WAITING for t in store.trials(name))
        if stop == "ctrl-c":
            assert driver.returncode == 130, err.decode()
            assert store.get_study(name).status is StudyStatus.PAUSED
            assert store.get_study(name).lease_owner is None  # released: a plain resume takes it
            assert [t.status for t in store.trials(name)] == [TrialStatus.WAITING] * 2
            attempts = store.attempts(name)
            assert [(a.outcome, a.error) for a in attempts] == [(AttemptOutcome.INTERRUPTED, "the driver stopped")] * 2
            assert not store.results(name)  # nothing reported, nothing spent
            _resume_to_the_end(ray_cluster, url, tmp_path, name)
        else:
            assert driver.returncode == -signal.SIGKILL
            assert store.get_study(name).status is StudyStatus.RUNNING  # as the killed driver left it
            assert [a.outcome for a in store.attempts(name)] == [AttemptOutcome.RUNNING] * 2
            _resume_to_the_end(ray_cluster, url, tmp_path, name, "--force")


# -- the driver as a Ray Job, and through Ray Client ---------------------------------------------------------


def _short_study_args(tmp_path: Path, model_dir: Path, url: str, name: str) -> list[str]:
    import yaml

    from tests.cli.test_study import TINY_SPACE
    from tests.conftest import tiny_recipe_dict

    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(model_dir, fmin=12, fmax=12, threads=1)), encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    return ["study", "run", "--space", str(space), "--trial", str(recipe), "--storage", url, "--name", name,
            "--strategy", "random", "--budget", "2", "-q", "--executor", "ray", "--runs-dir", str(tmp_path / "runs")]


def _ran_on_the_cluster(url: str, name: str) -> None:
    store = Store(url)
    assert [t.status for t in store.trials(name)] == [TrialStatus.COMPLETE] * 2
    assert len(_nodes(store, name)) >= 1  # Ray workers, one GPU id each
    assert budget_spent(store.results(name), 12) == pytest.approx(2.0)


@pytest.mark.slow
def test_the_driver_runs_as_a_ray_job(ray_cluster: RayTestCluster, tmp_path: Path, tiny_model_dir: Path) -> None:
    """`ray job submit --working-dir <the package> -- python -m autopeft.cli study run --executor ray ...`.

    The job's driver runs on the head; it finds the cluster through RAY_ADDRESS (no --ray-address).
    """
    import shutil

    if ray_cluster.dashboard is None:
        pytest.skip("needs the head's dashboard (the Ray Jobs server): the cluster this test session started")
    working = tmp_path / "job"
    shutil.copytree(REPO / "autopeft", working / "autopeft", ignore=shutil.ignore_patterns("__pycache__"))
    with pg_schema() as (user, schema):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        ray = str(Path(sys.executable).with_name("ray"))
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        job = subprocess.run([ray, "job", "submit", "--address", ray_cluster.dashboard, "--working-dir", str(working),
                              "--", "python", "-m", "autopeft.cli", *_short_study_args(tmp_path, tiny_model_dir, url,
                                                                                       "job")],
                             env=env, capture_output=True, text=True, timeout=240)
        assert job.returncode == 0, (job.stdout[-3000:], job.stderr[-3000:])
        assert "succeeded" in job.stdout + job.stderr
        _ran_on_the_cluster(url, "job")


@pytest.mark.slow
def test_a_study_runs_through_ray_client(ray_cluster: RayTestCluster, tmp_path: Path, tiny_model_dir: Path) -> None:
    """`--ray-address ray://HOST:10001` (Ray Client): the driver runs here, its tasks on the cluster.

    With a trial timeout, which through Ray Client counts from submission (no streaming tasks there).
    """
    if ray_cluster.client is None:
        pytest.skip("needs the head's Ray Client server: the cluster this test session started")
    with pg_schema() as (user, schema):
        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        driver = subprocess.run([sys.executable, "-m", "autopeft.cli", *_short_study_args(tmp_path, tiny_model_dir,
                                                                                          url, "client"),
                                 "--ray-address", ray_cluster.client, "--trial-timeout", "120"],
                                cwd=REPO, capture_output=True, text=True, timeout=240)
        assert driver.returncode == 0, driver.stderr[-3000:]
        _ran_on_the_cluster(url, "client")


def test_ray_client_is_retried_when_the_head_cannot_start_its_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy head can fail to start a client's server; `connect` tries again, then names the server's cause."""
    import ray

    from autopeft.engine import ray_executor

    calls: list[str | None] = []

    def failing_init(address: str | None = None, **_: Any) -> None:
        calls.append(address)
        raise ConnectionAbortedError("Initialization failure from server:\nTraceback (most recent call last):\n"
                                     "  File \"proxier.py\", line 766\n"
                                     "RuntimeError: Starting Ray client server failed.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", failing_init)
    monkeypatch.setattr(ray_executor, "CLIENT_RETRY_SECONDS", 0.0)
    with pytest.raises(ConfigError) as caught:
        ray_executor.connect("ray://127.0.0.1:10001")
    assert calls == ["ray://127.0.0.1:10001"] * ray_executor.CLIENT_ATTEMPTS == ["ray://127.0.0.1:10001"] * 3
    assert caught.value.field == "ray-address"
    assert str(caught.value).endswith("cannot connect to the Ray cluster at ray://127.0.0.1:10001: Initialization "
                                      "failure from server: RuntimeError: Starting Ray client server failed.")
    calls.clear()
    with pytest.raises(ConfigError):  # a GCS address is not Ray Client: no server to wait for, one try
        ray_executor.connect("127.0.0.1:6379")
    assert calls == ["127.0.0.1:6379"]
