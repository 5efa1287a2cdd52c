"""Faults a study meets, each reproduced, with assertions on what the store holds afterwards.

Fast cases drive the loop on the synthetic objective with a real worker pool: a hung trial, a silent
worker, a worker that dies, a NaN objective. The slow cases run the real CLI on the demo recipe
(packaged MiniLM) and SIGKILL the driver at seeded moments, or one of its workers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from autopeft.engine.executors import InProcessExecutor, LocalPoolExecutor
from autopeft.engine.lease import FaultPolicy
from autopeft.engine.loop import Budget, StudyLoop, budget_spent
from autopeft.engine.strategy import make_scheduler
from autopeft.status import AttemptOutcome, TrialStatus
from autopeft.store import Store, StudyStatus
from tests.conftest import default_sigint
from tests.engine.faulty import WithOptions, dying_runner, hanging_runner, nan_runner, silent_once_runner
from tests.engine.synthetic import DIMS, MAX_F, UniformSampler
from tests.engine.test_loop import OBJECTIVES, _study

REPO = Path(__file__).resolve().parents[2]


def _run(store: Store, name: str, runner: Any, executor: Any, *, budget: float, policy: FaultPolicy) -> Any:
    definition = _study(store, name, strategy="random")

    def factory(propose: Any) -> Any:
        return make_scheduler("random", propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    loop = StudyLoop(store=store, name=name, definition=definition, scheduler_factory=factory,
                     sampler=UniformSampler(DIMS, OBJECTIVES, seed=1), executor=executor, runner=runner,
                     compile_config=lambda c: {"plan": {}}, budget=Budget(trials=budget), policy=policy)
    return loop.run()


def _outcomes(store: Store, name: str) -> dict[int, list[AttemptOutcome]]:
    history: dict[int, list[AttemptOutcome]] = {}
    for attempt in store.attempts(name):
        history.setdefault(attempt.trial_number, []).append(attempt.outcome)
    return history


def test_a_hung_trial_fails_at_its_timeout_and_the_study_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    policy = FaultPolicy(trial_timeout=2.0)
    summary = _run(store, "h", WithOptions(hanging_runner, {"hang_on": [1]}),
                   LocalPoolExecutor(2, trial_timeout=policy.trial_timeout), budget=4, policy=policy)
    assert summary.status is StudyStatus.COMPLETE
    trials = {t.number: t for t in store.trials("h")}
    assert trials[1].status is TrialStatus.FAILED and "timed out" in (trials[1].error or "")
    assert _outcomes(store, "h")[1] == [AttemptOutcome.TIMEOUT]
    assert sum(t.status is TrialStatus.COMPLETE for t in trials.values()) == 4  # the others spent the budget


def test_a_silent_worker_is_reclaimed_and_its_trial_runs_again(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    # The grace counts from submission, so it must cover a replacement worker's start-up (spawn and
    # imports: over 2 s on a loaded 2-core CI machine, which once took the retry as lost too).
    policy = FaultPolicy(heartbeat_interval=0.5, heartbeat_grace=6.0)
    summary = _run(store, "s", WithOptions(silent_once_runner, {"silent_once": str(tmp_path)}),
                   LocalPoolExecutor(2), budget=2, policy=policy)
    assert summary.status is StudyStatus.COMPLETE
    trials = store.trials("s")
    assert len(trials) == 2 and all(t.status is TrialStatus.COMPLETE for t in trials)
    histories = _outcomes(store, "s")
    assert all(history == [AttemptOutcome.LOST, AttemptOutcome.REPORTED] for history in histories.values()), histories
    silent_pids = [int((tmp_path / f"trial_{t.number}").read_text()) for t in trials]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in silent_pids)  # the frozen workers were ended, not left behind


def test_a_worker_that_keeps_dying_fails_its_trial_after_the_retries(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    summary = _run(store, "d", WithOptions(dying_runner, {"die_on": [0]}), LocalPoolExecutor(2), budget=3,
                   policy=FaultPolicy(max_retries=1))
    assert summary.status is StudyStatus.COMPLETE
    trials = {t.number: t for t in store.trials("d")}
    assert trials[0].status is TrialStatus.FAILED and "lost its worker 2 times" in (trials[0].error or "")
    history = _outcomes(store, "d")
    assert history[0] == [AttemptOutcome.LOST, AttemptOutcome.LOST]
    assert all(h == [AttemptOutcome.REPORTED] for n, h in history.items() if n != 0)  # nobody else paid
    assert budget_spent(store.results("d"), MAX_F) == pytest.approx(3.0)


def test_a_nan_objective_fails_only_its_trial(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    summary = _run(store, "n", nan_runner, InProcessExecutor(), budget=3, policy=FaultPolicy())
    assert summary.status is StudyStatus.COMPLETE
    trials = {t.number: t for t in store.trials("n")}
    assert trials[1].status is TrialStatus.FAILED and trials[1].error == "objective score is nan"
    assert not [r for r in store.results("n") if r.trial_number == 1]  # nothing non-finite is stored
    assert sum(t.status is TrialStatus.COMPLETE for t in trials.values()) == 3


# -- the real CLI on the demo recipe, killed ----------------------------------------------------------------


def _cli(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "autopeft.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=default_sigint)


def _worker_pids(store: Store, name: str) -> set[int]:
    return {int(a.worker.rsplit(":", 1)[1]) for a in store.attempts(name) if a.worker}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {within} s: {what}")


def _has_rows(store: Store, name: str, table: str) -> bool:
    try:
        return bool(store.attempts(name) if table == "attempts" else store.trials(name))
    except Exception:  # the study row is not written yet
        return False


def _check_consistent(store: Store, name: str, budget: float) -> None:
    trials = store.trials(name)
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # dense and unique
    configs = [json.dumps(t.config, sort_keys=True) for t in trials]
    assert len(set(configs)) == len(configs)  # no configuration ran twice by accident
    assert all(t.status.is_finished for t in trials)  # none left running or waiting
    results = store.results(name)
    assert {r.trial_id for r in results} <= {t.id for t in trials}
    assert len({(r.trial_id, r.fidelity) for r in results}) == len(results)
    max_f = int(store.get_study(name).recipe["spec"]["fidelity"]["max"])
    assert budget <= budget_spent(results, max_f) < budget + 1  # one budget over every run, not one each
    assert all(a.outcome is not AttemptOutcome.RUNNING for a in store.attempts(name))
    record = store.get_study(name)
    assert record.status is StudyStatus.COMPLETE and record.lease_owner is None


@pytest.mark.slow
def test_a_driver_killed_at_seeded_moments_resumes_to_a_consistent_study(tmp_path: Path) -> None:
    url, name, budget = f"sqlite:///{tmp_path / 'k.db'}", "k", 3.0
    rng = random.Random(12)
    args = ["--storage", url, "--workers", "2", "-q", "--runs-dir", str(tmp_path / "runs")]
    first = ["study", "run", "--space", "search_spaces/quickstart.yaml", "--trial", "trials/demo.yaml",
             "--name", name, "--budget", str(budget), *args]
    store = Store(url)
    for attempt in range(3):
        driver = _cli(*(first if attempt == 0 else ["study", "resume", name, *args]))
        try:
            _wait(lambda: _has_rows(store, name, "attempts") and bool(_worker_pids(store, name)), 180,
                  "a worker started a trial")
            time.sleep(rng.uniform(0.5, 8.0))
            workers = _worker_pids(store, name)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
        _wait(lambda workers=workers: not any(_alive(p) for p in workers), 10, "the killed driver's workers exited")
    driver = _cli("study", "resume", name, *args)
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err.decode()
    _check_consistent(store, name, budget)
    interrupted = [a for a in store.attempts(name) if a.outcome is AttemptOutcome.INTERRUPTED]
    assert interrupted  # the killed runs' jobs are in the history, and ran again
    assert all(a.error == "the driver stopped" for a in interrupted)


@pytest.mark.slow
def test_a_killed_worker_costs_only_its_own_trial(tmp_path: Path) -> None:
    url, name = f"sqlite:///{tmp_path / 'w.db'}", "w"
    store = Store(url)
    driver = _cli("study", "run", "--space", "search_spaces/quickstart.yaml", "--trial", "trials/demo.yaml",
                  "--name", name, "--budget", "2", "--workers", "2", "--strategy", "random", "-q", "--storage", url,
                  "--runs-dir", str(tmp_path / "runs"))
    try:
        def two_running() -> bool:
            return _has_rows(store, name, "attempts") and len(
                [a for a in store.attempts(name) if a.outcome is AttemptOutcome.RUNNING and a.worker]) == 2

        _wait(two_running, 180, "two trials running on two workers")
        running = [a for a in store.attempts(name) if a.outcome is AttemptOutcome.RUNNING and a.worker]
        victim = running[0]
        os.kill(int(str(victim.worker).rsplit(":", 1)[1]), signal.SIGKILL)
        _, err = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 0, err.decode()
    history = {}
    for a in store.attempts(name):
        history.setdefault(a.trial_number, []).append(a.outcome)
    assert history[victim.trial_number][0] is AttemptOutcome.LOST  # only the victim counts an attempt
    assert history[victim.trial_number][-1] is AttemptOutcome.REPORTED  # and it ran again from its checkpoint
    assert all(AttemptOutcome.LOST not in h for n, h in history.items() if n != victim.trial_number)
    _check_consistent(store, name, 2.0)
