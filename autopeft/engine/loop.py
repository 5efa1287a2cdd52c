"""The study loop: ask the scheduler for work, run it on an executor, record every result as it arrives.

    scheduler.suggest() -> Suggestion --(compile, create trial row)--> executor.submit(runner, task)
          ^                                                                        |
          +---- on_trial_result / on_trial_error <--- record in the store <--------+

The store is written before the scheduler hears of a result, so a crash at any point loses at most
the jobs that were running; `StudyLoop.run(resume=True)` rebuilds the scheduler from the store and
runs those jobs again from their last checkpoint. The budget counts training in full-fidelity trial
equivalents (a job from fidelity a to b costs (b - a) / max), plus an optional wall-time limit; the
loop stops starting work when either is spent and lets running jobs finish, so the last job may
overshoot the budget by less than one full trial. Failed jobs cost nothing: the budget measures the
training that produced results, which is also what a resumed study can count from the store.

Trials still paused at a rung when the budget runs out are marked pruned. A study resumed with a larger
budget continues its brackets: the scheduler knows those trials as paused again, and one it promotes is
reopened (pruned -> paused) and resumed from its checkpoint, so extending a study wastes nothing it learnt.

Faults (see `FaultPolicy`): every job is an attempt in the store. A job whose worker died, or whose
heartbeat went silent, goes back to waiting and runs again from its checkpoint, up to ``max_retries``
times; a job past the trial timeout fails its trial; a non-finite objective fails its trial. With a
`DriverLease`, every write is fenced by the lease, and a driver that was taken over stops at once
without writing anything more.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopeft.engine.definition import StudyDefinition
from autopeft.engine.executors import Executor, Runner, TrialTimeoutError, WorkerLostError
from autopeft.engine.front import Front, FrontEntry, compute_front, study_front
from autopeft.engine.lease import DriverLease, FaultPolicy
from autopeft.engine.paths import trial_dir_for
from autopeft.engine.progress import Display, NullDisplay, StudyProgress
from autopeft.engine.proposals import ProposalQueue
from autopeft.engine.task import Heartbeat, TrialOutcome, TrialTask
from autopeft.errors import AutopeftError, describe_exception
from autopeft.search.history import History, Observation
from autopeft.search.samplers.base import Sampler
from autopeft.search.scheduler import Decision, RestoredTrial, Scheduler, Suggestion
from autopeft.status import AttemptOutcome
from autopeft.store import AttemptRecord, LeaseLostError, ResultRecord, Store, StudyStatus, TrialRecord, TrialStatus

log = logging.getLogger(__name__)

#: Turns a configuration into the compiled `TrialConfig` mapping the worker trains (raises `AutopeftError`).
Compile = Callable[[Mapping[str, Any]], Mapping[str, Any] | None]


def budget_spent(results: Iterable[ResultRecord], max_fidelity: int) -> float:
    """Training that produced results, in full-trial equivalents: each trial's highest fidelity / max.

    What a resumed study counts as spent (jobs lost in a crash and failed jobs are not counted).
    """
    reached: dict[int, int] = {}
    for result in results:
        reached[result.trial_number] = max(reached.get(result.trial_number, 0), result.fidelity)
    return sum(reached.values()) / max_fidelity


@dataclass(frozen=True)
class Budget:
    """How much a run of the loop may spend: full-fidelity trial equivalents and/or seconds."""

    trials: float | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        from autopeft.errors import ConfigError

        if self.trials is not None and self.trials <= 0:
            raise ConfigError(f"must be > 0, got {self.trials}", field="budget")
        if self.seconds is not None and self.seconds <= 0:
            raise ConfigError(f"must be > 0, got {self.seconds}", field="max_time")


@dataclass
class _Running:
    suggestion: Suggestion
    trial: TrialRecord
    cost: float
    attempt: AttemptRecord


@dataclass
class StudySummary:
    """What a run of the loop did, for the CLI's closing lines."""

    name: str
    status: StudyStatus
    counts: dict[str, int]
    budget_used: float
    seconds: float
    front: Front


@dataclass
class _Mirror:
    """The loop's in-memory view of the study (the store holds the same; this saves queries)."""

    observations: list[Observation] = field(default_factory=list)
    failed: list[Mapping[str, Any]] = field(default_factory=list)
    completed: list[FrontEntry] = field(default_factory=list)
    status: dict[int, TrialStatus] = field(default_factory=dict)  # by trial number
    lost: dict[int, int] = field(default_factory=dict)  # attempts lost to a dead or silent worker, by trial number
    used: float = 0.0  # budget spent, in full-trial equivalents


class StudyLoop:
    """Runs one study until its budget is spent or its scheduler has nothing left to run."""

    def __init__(self, *, store: Store, name: str, definition: StudyDefinition, scheduler_factory: Any,
                 sampler: Sampler, executor: Executor, runner: Runner, compile_config: Compile,
                 budget: Budget, runs_dir: Path | str | None = None, display: Display | None = None,
                 policy: FaultPolicy | None = None, lease: DriverLease | None = None) -> None:
        self.store = store
        self.name = name
        self.definition = definition
        self.sampler = sampler
        self.executor = executor
        self.runner = runner
        self.compile_config = compile_config
        self.budget = budget
        self.runs_dir = runs_dir
        self.display: Display = display or NullDisplay()
        self.policy = policy or FaultPolicy()
        self.lease = lease
        self._owner = None if lease is None else lease.owner  # fences every write of this driver
        self._retry: list[Suggestion] = []  # lost jobs to run again before anything new
        self._last_silence_check = time.monotonic()
        self._running: dict[Future[TrialOutcome], _Running] = {}
        # Slow samplers propose ahead, in the background, while trials run elsewhere (`ProposalQueue`).
        self.queue = ProposalQueue(sampler, self._history, running=lambda: len(self._running),
                                   ahead=not executor.inline)
        self.scheduler: Scheduler = scheduler_factory(self.queue)
        self._mirror = _Mirror()
        self._trials: dict[int, TrialRecord] = {}  # scheduler trial id -> store row
        self._started = time.monotonic()
        self._max = definition.max_fidelity
        self._names = [o.name for o in definition.objectives]

    # -- what samplers see ---------------------------------------------------------------------------
    def _history(self) -> History:
        # In flight: running, and the lost or interrupted jobs waiting to run again (a resumed study's first
        # proposals must not repeat them: the space's defaults are proposed by value, not drawn).
        pending = (*(r.suggestion.config for r in self._running.values()), *(s.config for s in self._retry))
        return History(tuple(self._mirror.observations), pending, len(self._trials), tuple(self._mirror.failed))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> StudySummary:
        """Run to the end of the budget; Ctrl-C pauses the study (resume it later from the store)."""
        resubmit = self._restore() if resume else []
        self.store.set_study_status(self.name, StudyStatus.RUNNING, lease=self._owner)
        taken_over = False
        try:
            with self.display:
                self._retry.extend(resubmit)
                self._drive()
        except KeyboardInterrupt:
            self._interrupt()
            return self._summary(StudyStatus.PAUSED)
        except LeaseLostError:
            taken_over = True  # the new driver owns these trials: stop their jobs, write nothing more
            raise
        except BaseException:
            self._interrupt()
            raise
        finally:
            self.executor.shutdown(cancel=bool(self._running) or taken_over)
        self.queue.settle()  # a proposal still being made in the background (none is started once the budget is spent)
        for number, trial_status in self._mirror.status.items():
            if trial_status is TrialStatus.PAUSED:  # not promoted within the budget (a larger one may reopen it)
                self.store.set_trial_status(self._trials[number].id, TrialStatus.PRUNED, lease=self._owner)
                self._mirror.status[number] = TrialStatus.PRUNED
        self.store.set_study_status(self.name, StudyStatus.COMPLETE, lease=self._owner)
        summary = self._summary(StudyStatus.COMPLETE)
        self.display.finish(self._progress())
        return summary

    def _drive(self) -> None:
        while True:
            if self.lease is not None:
                self.lease.check()
            self._fill()
            if not self._running:
                return
            done, _ = wait(list(self._running), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                self._finish(future, self._running[future])
                del self._running[future]  # after: a Ctrl-C inside `_finish` leaves the job to `_interrupt`
            self._reclaim_silent()
            self.display.update(self._progress())

    def _can_start(self) -> bool:
        if self.budget.seconds is not None and time.monotonic() - self._started >= self.budget.seconds:
            return False
        if self.budget.trials is not None:
            committed = self._mirror.used + sum(r.cost for r in self._running.values())
            return committed < self.budget.trials - 1e-9
        return True

    def _fill(self) -> None:
        free = self.executor.workers - len(self._running)
        if free > 1 and self._can_start():
            self.queue.prefetch(free)  # one joint batch for the free workers
        while self._retry and len(self._running) < self.executor.workers:
            again = self._retry.pop(0)  # already paid for: runs even when the budget is spent
            self._launch(again, self._trials[again.trial_id])
        while len(self._running) < self.executor.workers and self._can_start():
            suggestion = self.scheduler.suggest()
            if suggestion is None:
                return
            trial = self._trials.get(suggestion.trial_id) or self._create_trial(suggestion)
            if trial is not None:
                self._launch(suggestion, trial)
        if self._running and self._can_start():
            self.queue.ahead()  # the next configuration, ready when a worker frees

    def _create_trial(self, s: Suggestion) -> TrialRecord | None:
        """The store row of a new trial; a configuration that does not compile is recorded as failed."""
        try:
            compiled, error = self.compile_config(s.config), None
        except AutopeftError as err:
            compiled, error = None, str(err)
        trial = self.store.create_trial(self.name, dict(s.config), plan=compiled, bracket=s.bracket, lease=self._owner)
        self._trials[s.trial_id] = trial
        if error is not None:
            self._fail(s, trial, error)
            return None
        return trial

    def _launch(self, s: Suggestion, trial: TrialRecord) -> None:
        trial_dir = None if self.runs_dir is None else str(trial_dir_for(self.runs_dir, self.name, trial.number))
        if self._mirror.status.get(trial.number) is TrialStatus.PRUNED:  # paused when an earlier budget ran out
            self.store.set_trial_status(trial.id, TrialStatus.PAUSED, lease=self._owner)
        attempt = self.store.start_attempt(trial.id, s.fidelity, resume_from=s.resume_from, lease=self._owner)
        heartbeat = Heartbeat(self.store.url, trial.id, attempt.id, self.policy.heartbeat_interval)
        task = TrialTask(study=self.name, number=trial.number, config=dict(s.config), trial_config=trial.plan,
                         recipe=self.definition.recipe, recipe_dir=self.definition.recipe_dir,
                         fidelity=s.fidelity, trial_dir=trial_dir, threads=self.executor.threads_per_trial(),
                         heartbeat=heartbeat)
        self._mirror.status[trial.number] = TrialStatus.RUNNING
        cost = (s.fidelity - (s.resume_from or 0)) / self._max
        self._running[self.executor.submit(self.runner, task)] = _Running(s, trial, cost, attempt)
        log.info("trial %d: %s to %d (attempt %d)", trial.number, s.kind.value, s.fidelity, attempt.number)

    def _finish(self, future: Future[TrialOutcome], job: _Running) -> None:
        s, trial = job.suggestion, job.trial
        if future.cancelled():
            return  # stopped on purpose (`_reclaim_silent`), already accounted for
        try:
            outcome = future.result()
        except WorkerLostError as err:
            self._lost(job, str(err))
            return
        except TrialTimeoutError as err:
            self._end_attempt(job, AttemptOutcome.TIMEOUT, str(err))
            self._fail(s, trial, f"timed out: {err}")
            return
        except Exception as err:  # a runner that raised instead of reporting: still one trial's failure
            outcome = TrialOutcome(trial.number, TrialStatus.FAILED, s.fidelity, error=describe_exception(err))
        if not outcome.ok:
            self._end_attempt(job, AttemptOutcome.FAILED, outcome.error, outcome.worker)
            self._fail(s, trial, outcome.error or "failed", outcome.worker)
            return
        objectives = {n: float(outcome.objectives[n]) for n in self._names if n in outcome.objectives}
        missing = [n for n in self._names if n not in objectives]
        bad = [f"{n} is {v}" for n, v in objectives.items() if not math.isfinite(v)]
        if missing or bad:
            error = f"the trial did not report {', '.join(missing)}" if missing else f"objective {', '.join(bad)}"
            self._end_attempt(job, AttemptOutcome.FAILED, error, outcome.worker)
            self._fail(s, trial, error, outcome.worker)
            return
        self.store.record_result(trial.id, s.fidelity, objectives, dict(outcome.metrics), lease=self._owner)
        self._end_attempt(job, AttemptOutcome.REPORTED, None, outcome.worker)
        if s.resume_from and outcome.metrics.get("start_step") == 0:
            # The score is still right (the schedule spans the top fidelity, so a run from scratch is the
            # run it continues), but the time is spent again: say so, since the checkpoints were deleted.
            log.warning("trial %d: its checkpoint at %d was not found in %s; it trained again from the start",
                        trial.number, s.resume_from, outcome.metrics.get("trial_dir", "the runs folder"))
        self._mirror.used += job.cost
        self._mirror.observations.append(Observation(trial.number, dict(s.config), s.fidelity, objectives))
        decision = self.scheduler.on_trial_result(s.trial_id, s.fidelity, objectives)
        if decision is Decision.STOP and s.fidelity >= self._max:
            status = TrialStatus.COMPLETE
        elif decision is Decision.STOP:
            status = TrialStatus.FAILED  # a scheduler stops below max only for a NaN objective
        else:
            status = TrialStatus.PAUSED
        self.store.set_trial_status(trial.id, status, worker=outcome.worker, lease=self._owner,
                                    error="an objective was NaN" if status is TrialStatus.FAILED else None)
        self._mirror.status[trial.number] = status
        if status is TrialStatus.COMPLETE:
            self._mirror.completed.append(FrontEntry(trial.id, trial.number, dict(s.config), trial.plan, objectives,
                                                     dict(outcome.metrics), s.fidelity))
            front = self._front()
            self.store.add_pareto_snapshot(self.name, [e.trial_id for e in front.entries], front.hypervolume,
                                           lease=self._owner)

    def _fail(self, s: Suggestion, trial: TrialRecord, error: str, worker: str | None = None) -> None:
        log.info("trial %d failed: %s", trial.number, error)
        self.store.set_trial_status(trial.id, TrialStatus.FAILED, error=error, worker=worker, lease=self._owner)
        self._mirror.status[trial.number] = TrialStatus.FAILED
        self._mirror.failed.append(dict(s.config))
        self.scheduler.on_trial_error(s.trial_id)

    def _end_attempt(self, job: _Running, outcome: AttemptOutcome, error: str | None,
                     worker: str | None = None) -> None:
        self.store.end_attempt(job.attempt.id, outcome, error=error, worker=worker, lease=self._owner)

    def _lost(self, job: _Running, reason: str) -> None:
        """A job's worker died or went silent: run it again from its checkpoint, or fail after too many losses."""
        number = job.trial.number
        self._end_attempt(job, AttemptOutcome.LOST, reason)
        self._mirror.lost[number] = self._mirror.lost.get(number, 0) + 1
        if self._mirror.lost[number] > self.policy.max_retries:
            self._fail(job.suggestion, job.trial, f"lost its worker {self._mirror.lost[number]} times "
                       f"(--max-retries {self.policy.max_retries}); last: {reason}")
            return
        log.info("trial %d: %s; it runs again from its checkpoint", number, reason)
        self.store.set_trial_status(job.trial.id, TrialStatus.WAITING, lease=self._owner)
        self._mirror.status[number] = TrialStatus.WAITING
        self._retry.append(job.suggestion)

    def _reclaim_silent(self) -> None:
        """Running trials whose worker stopped beating for longer than the grace period are lost."""
        now = time.monotonic()
        if now - self._last_silence_check < self.policy.heartbeat_interval or not self._running:
            return
        self._last_silence_check = now
        silent = {t.number for t in self.store.silent_trials(self.name, self.policy.heartbeat_grace)}
        for future, job in list(self._running.items()):
            if job.trial.number in silent and not future.done():
                del self._running[future]
                self.executor.cancel(future)
                self._lost(job, f"no heartbeat for over {self.policy.heartbeat_grace:g} s")

    def _interrupt(self) -> None:
        """Stop: running trials go back to waiting (a resume runs them again), the study is paused."""
        for job in self._running.values():
            self._end_attempt(job, AttemptOutcome.INTERRUPTED, "the driver stopped")
            self.store.set_trial_status(job.trial.id, TrialStatus.WAITING, lease=self._owner)
        for suggestion in self._retry:
            self.store.set_trial_status(self._trials[suggestion.trial_id].id, TrialStatus.WAITING, lease=self._owner)
        self.store.set_study_status(self.name, StudyStatus.PAUSED, lease=self._owner)

    # -- resuming ------------------------------------------------------------------------------------
    def _restore(self) -> list[Suggestion]:
        """Rebuild the mirror and the scheduler from the store; return the jobs to run again."""
        self.store.close_open_attempts(self.name, AttemptOutcome.INTERRUPTED, error="the driver stopped",
                                       lease=self._owner)
        for attempt in self.store.attempts(self.name):
            if attempt.outcome is AttemptOutcome.LOST:
                self._mirror.lost[attempt.trial_number] = self._mirror.lost.get(attempt.trial_number, 0) + 1
        trials = self.store.trials(self.name)
        configs = {t.number: t.config for t in trials}
        results = sorted(self.store.results(self.name), key=lambda r: r.id)
        by_number: dict[int, list[tuple[int, dict[str, float]]]] = {t.number: [] for t in trials}
        for result in results:
            by_number[result.trial_number].append((result.fidelity, dict(result.objectives)))
            self._mirror.observations.append(Observation(result.trial_number, configs[result.trial_number],
                                                         result.fidelity, dict(result.objectives)))
        self._mirror.used = budget_spent(results, self._max)
        restored = []
        for trial in trials:
            self._trials[trial.number] = trial
            self._mirror.status[trial.number] = trial.status
            if trial.status is TrialStatus.FAILED:
                self._mirror.failed.append(trial.config)
            restored.append(RestoredTrial(trial.number, trial.config, trial.status, trial.bracket,
                                          tuple(by_number[trial.number])))
        resubmit = self.scheduler.restore(restored)
        # An active trial the scheduler does not run again had reported its target before the stop (the
        # driver stopped between `record_result` and the status write): record the status it missed.
        again = {s.trial_id for s in resubmit}
        for trial in trials:
            if trial.status.is_active and trial.number not in again:
                reached = max((f for f, _ in by_number[trial.number]), default=0)
                status = TrialStatus.COMPLETE if reached >= self._max else TrialStatus.PAUSED
                self.store.set_trial_status(trial.id, status, lease=self._owner)
                self._mirror.status[trial.number] = status
        self._mirror.completed = list(study_front(self.store, self.name).completed)
        return resubmit

    # -- reporting -----------------------------------------------------------------------------------
    def _front(self) -> Front:
        return compute_front(self.definition.objectives, self._mirror.completed)

    def _progress(self) -> StudyProgress:
        counts = {s.value: 0 for s in TrialStatus}
        for status in self._mirror.status.values():
            counts[status.value] += 1
        return StudyProgress(name=self.name, counts=counts, budget_used=self._mirror.used,
                             budget_committed=self._mirror.used + sum(r.cost for r in self._running.values()),
                             budget_total=self.budget.trials, elapsed=time.monotonic() - self._started,
                             time_limit=self.budget.seconds, front=self._front())

    def _summary(self, status: StudyStatus) -> StudySummary:
        progress = self._progress()
        return StudySummary(self.name, status, progress.counts, self._mirror.used,
                            time.monotonic() - self._started, progress.front)
