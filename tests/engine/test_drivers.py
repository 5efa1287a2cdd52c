"""Several drivers on one store: one driver per study, takeovers, and many studies driven at once.

Drivers are separate processes (`tests.engine._driver`) running a synthetic study through `DriverLease`
and `StudyLoop`; every test judges the run by what the store holds afterwards.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from autopeft.engine.executors import InProcessExecutor
from autopeft.engine.lease import DriverLease
from autopeft.engine.loop import Budget, StudyLoop, budget_spent
from autopeft.engine.strategy import make_scheduler
from autopeft.status import AttemptOutcome
from autopeft.store import Lease, LeaseLostError, ResultRecord, Store, StudyStatus, TrialStatus
from tests.engine._driver import OBJECTIVES, STRATEGY, SteadyRunner, create_study, definition
from tests.engine.synthetic import DIMS, MAX_F, UniformSampler

ROOT = Path(__file__).resolve().parents[2]
DRIVER = [sys.executable, "-m", "tests.engine._driver"]


def _spawn(*args: str) -> subprocess.Popen[str]:
    """A helper process that has connected to the store and waits for a line on stdin."""
    proc = subprocess.Popen([*DRIVER, *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if args[0] == "drive":
        line = proc.stdout.readline().strip()
        assert line == "ready", f"driver did not start: {line!r} {proc.communicate()[1][-2000:]}"
    return proc


def _go(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def _end(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    """Exit code, last stdout line and stderr of a helper process."""
    out, err = proc.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    return proc.returncode, lines[-1] if lines else "", err


def _holder(proc: subprocess.Popen[str]) -> str:
    return f"{Lease.for_this_process().host}:{proc.pid}"


def _key(config: Any) -> str:
    return json.dumps(config, sort_keys=True)


def _assert_study_is_sound(store: Store, study: str, *, trials: int | None = None,
                           budget: float | None = None) -> list[ResultRecord]:
    """What any run of a study must leave behind, however many drivers took part (the runner never fails)."""
    record = store.get_study(study)
    assert record.status is StudyStatus.COMPLETE
    assert record.lease_owner is None and record.lease_heartbeat is None  # released at the end
    rows = store.trials(study)
    numbers = [t.number for t in rows]
    assert numbers == list(range(len(rows))), "trial numbers are dense and unique"
    if trials is not None:
        assert len(rows) == trials
    assert len({_key(t.config) for t in rows}) == len(rows), "no configuration was run twice"
    assert all(t.status is TrialStatus.COMPLETE for t in rows), Counter(t.status.value for t in rows)
    assert all(t.finished_at is not None and t.started_at is not None for t in rows)

    results = store.results(study)
    ids = {t.id for t in rows}
    assert all(r.trial_id in ids for r in results)
    assert Counter((r.trial_id, r.fidelity) for r in results).most_common(1)[0][1] == 1
    assert sorted(r.trial_number for r in results) == numbers and {r.fidelity for r in results} == {MAX_F}
    if budget is not None:
        assert budget <= budget_spent(results, MAX_F) < budget + 1

    # Attempts: numbered 1.. per trial, none left open, and each trial reported exactly once.
    attempts: dict[int, list[Any]] = {}
    for attempt in store.attempts(study):
        attempts.setdefault(attempt.trial_number, []).append(attempt)
    assert sorted(attempts) == numbers
    finished = {t.number: t.finished_at for t in rows}
    for number, listed in attempts.items():
        assert [a.number for a in listed] == list(range(1, len(listed) + 1))
        # A finished trial never ran again (no attempt started after it finished).
        assert all(a.started_at <= finished[number] for a in listed), number
        assert all(a.outcome is not AttemptOutcome.RUNNING and a.ended_at is not None for a in listed), number
        assert [a.outcome for a in listed].count(AttemptOutcome.REPORTED) <= 1
    return results


def test_two_drivers_racing_for_one_study_run_it_once(store_url: str) -> None:
    store = Store(store_url)
    create_study(store, "race")
    args = ("drive", store_url, "race", "--budget", "10", "--sleep", "0.02")
    first, second = _spawn(*args), _spawn(*args)
    _go(first, second)  # both ask for the lease at the same moment
    ended = {proc.pid: _end(proc) for proc in (first, second)}
    codes = sorted(code for code, _, _ in ended.values())
    assert codes == [0, 2], {pid: (code, line, err[-1500:]) for pid, (code, line, err) in ended.items()}
    winner, loser = (first, second) if ended[first.pid][0] == 0 else (second, first)
    refusal = ended[loser.pid][1]
    assert refusal.startswith("study 'race' is being run by ") and _holder(winner) in refusal, refusal
    assert json.loads(ended[winner.pid][1])["warnings"] == []

    results = _assert_study_is_sound(store, "race", trials=10, budget=10)
    assert budget_spent(results, MAX_F) == 10  # spent once, not twice
    assert len({a.driver for a in store.attempts("race")} - {None}) == 1  # the refused driver wrote nothing
    store.close()


def test_a_forced_driver_takes_over_a_running_one(store_url: str) -> None:
    store = Store(store_url)
    create_study(store, "over")
    budget = 30
    common = ("drive", store_url, "over", "--budget", str(budget), "--sleep", "0.05", "--ttl", "3")
    first = _spawn(*common)
    second = _spawn(*common, "--force", "--resume")  # started now, so that it is ready when it is needed
    _go(first)
    deadline = time.monotonic() + 30
    while len(store.results("over")) < 5:
        assert first.poll() is None and time.monotonic() < deadline, _end(first)
        time.sleep(0.05)
    assert first.poll() is None, "the first driver must still be running at the takeover"
    _go(second)

    code, line, err = _end(first)
    assert code == 2 and line == f"study 'over' was taken over by {_holder(second)}; this driver stopped", (
        code, line, err[-2000:])
    code, line, err = _end(second)
    assert code == 0, (line, err[-2000:])
    assert json.loads(line)["warnings"] == []

    results = _assert_study_is_sound(store, "over", budget=budget)
    # Both drivers ran trials, and the first wrote nothing once the second held the study.
    drivers = [a.driver for a in store.attempts("over")]
    handovers = sum(a != b for a, b in itertools.pairwise(drivers))
    assert len(set(drivers)) == 2 and handovers == 1, "the first driver wrote nothing after the takeover"
    first_driver = drivers[0]
    handed_over = [a for a in store.attempts("over") if a.driver == first_driver][-1]
    assert handed_over.outcome in (AttemptOutcome.REPORTED, AttemptOutcome.INTERRUPTED)
    assert len(results) == len(store.trials("over")) >= budget
    store.close()


class _TakenOverAfterResult(Store):
    """A store on which another driver forces the study away right after the given trial's result is written."""

    def __init__(self, url: str, *, study: str, trial: int, thief: Lease) -> None:
        super().__init__(url)
        self.study, self.trial, self.thief = study, trial, thief

    def record_result(self, trial_id: int, fidelity: int, objectives: Any, metrics: Any = None, *,
                      lease: str | None = None) -> ResultRecord:
        result = super().record_result(trial_id, fidelity, objectives, metrics, lease=lease)
        if result.trial_number == self.trial:
            self.acquire_lease(self.study, self.thief, ttl=30, force=True)
        return result


def _loop(store: Store, name: str, lease: DriverLease, budget: float) -> StudyLoop:
    def factory(propose: Any) -> Any:
        return make_scheduler(STRATEGY, propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    return StudyLoop(store=store, name=name, definition=definition(), scheduler_factory=factory,
                     sampler=UniformSampler(DIMS, OBJECTIVES, seed=1), executor=InProcessExecutor(),
                     runner=SteadyRunner(0.0), compile_config=lambda c: {"plan": {}, **c},
                     budget=Budget(trials=budget), lease=lease)


def test_a_takeover_between_a_result_and_its_status_leaves_no_trial_running(store_url: str) -> None:
    """The first driver recorded trial 2's final result, then lost the study before marking it complete."""
    thief = Lease.for_this_process()
    first = _TakenOverAfterResult(store_url, study="gap", trial=2, thief=thief)
    create_study(first, "gap")
    with pytest.raises(LeaseLostError), DriverLease(first, "gap", Lease.for_this_process(), ttl=30) as lease:
        _loop(first, "gap", lease, budget=6).run()
    assert [t.status for t in first.trials("gap")][2] is TrialStatus.RUNNING  # its status write was refused
    first.close()

    store = Store(store_url)
    with DriverLease(store, "gap", thief, ttl=30) as lease:
        summary = _loop(store, "gap", lease, budget=6).run(resume=True)
    assert summary.status is StudyStatus.COMPLETE
    results = _assert_study_is_sound(store, "gap", trials=6, budget=6)
    assert [r.trial_number for r in results] == list(range(6))
    snapshot = store.latest_pareto_snapshot("gap")
    assert snapshot is not None and set(snapshot.trial_ids) == {e.trial_id for e in summary.front.entries}
    store.close()


@pytest.mark.slow
def test_four_drivers_and_a_reader_on_postgresql(store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("the stress test runs on PostgreSQL (SQLite serialises every writer anyway)")
    store = Store(store_url)
    studies = [f"stress-{i}" for i in range(4)]
    for name in studies:
        create_study(store, name)
    started = time.monotonic()
    drivers = [_spawn("drive", store_url, name, "--budget", "50") for name in studies]
    reader = _spawn("read", store_url, *studies)
    _go(*drivers)
    ended = [_end(proc, timeout=120) for proc in drivers]
    _go(reader)
    polls = _end(reader)
    seconds = time.monotonic() - started

    for code, line, err in ended:
        assert code == 0, (line, err[-2000:])
        assert json.loads(line)["warnings"] == [], "no database error in any driver"
    assert polls[0] == 0, polls[2][-2000:]
    read = json.loads(polls[1])
    assert read["errors"] == [] and read["inconsistent"] == [] and read["polls"] >= 3, read
    total = 0
    for name in studies:
        results = _assert_study_is_sound(store, name, trials=50, budget=50)
        total += len(results)
    assert total == 200  # none lost, none run twice
    assert len(store.list_studies()) == 4
    assert seconds < 90, seconds
    store.close()
