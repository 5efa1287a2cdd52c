"""A study driver and a store reader as separate processes, for the multi-driver tests (no torch).

    python -m tests.engine._driver drive URL STUDY [--budget N] [--sleep S] [--ttl S] [--force] [--resume]
    python -m tests.engine._driver read URL STUDY [STUDY ...]

``drive`` runs a synthetic study (strategy ``random``: every trial one full-fidelity job, in this
process) under a `DriverLease`. It prints ``ready`` once connected, waits for a line on stdin (so a
test can start several drivers at the same moment), then runs. It exits 0 printing one JSON line
(pid, budget used, warnings logged), or 2 printing the one-line `LeaseHeldError` / `LeaseLostError`
message; any other error exits 1 with its traceback.

``read`` polls the store every 0.2 s (studies, trials, results, latest Pareto snapshot of each study)
until its stdin has a line or closes, then prints one JSON line: polls, errors, and reads that saw
an inconsistent study (numbers not dense, a result twice, a result of an unknown trial).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys
import time
from typing import Any

from autopeft.engine.definition import StudyDefinition, make_objectives
from autopeft.engine.executors import InProcessExecutor
from autopeft.engine.lease import DriverLease, FaultPolicy
from autopeft.engine.loop import Budget, StudyLoop
from autopeft.engine.strategy import make_scheduler
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.status import TrialStatus
from autopeft.store import Lease, LeaseHeldError, LeaseLostError, Store
from tests.engine.synthetic import DIMS, MAX_F, UniformSampler, objectives

OBJECTIVES = make_objectives(("score", "trainable_params"), base_params=2_000_000)
STRATEGY = "random"


def definition() -> StudyDefinition:
    return StudyDefinition(space={"name": "synthetic"}, recipe={"fidelity": {"min": 1, "max": MAX_F}},
                           objectives=OBJECTIVES, recipe_dir=".")


def create_study(store: Store, name: str) -> None:
    """The study every driver of these tests runs (created by the test, before any driver starts)."""
    d = definition()
    store.create_study(name, space=d.space_json(), recipe=d.recipe_json(), objectives=d.objectives_json(),
                       strategy=STRATEGY, seed=0)


class SteadyRunner:
    """The synthetic objective without its failures (so trial counts are exact), ``sleep`` seconds a job."""

    def __init__(self, sleep: float) -> None:
        self.sleep = sleep

    def __call__(self, task: TrialTask) -> TrialOutcome:
        if self.sleep:
            time.sleep(self.sleep)
        return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity, objectives(task.config, task.fidelity),
                            {"pid": os.getpid()}, worker=str(os.getpid()))


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def drive(args: argparse.Namespace) -> int:
    warnings = _Count()
    logging.getLogger("autopeft").addHandler(warnings)
    store = Store(args.url)
    store.get_study(args.study)  # connected, schema checked: the race starts at the same point for everyone
    d = definition()

    def factory(propose: Any) -> Any:
        return make_scheduler(STRATEGY, propose, OBJECTIVES, min_fidelity=1, max_fidelity=MAX_F, seed=0)

    print("ready", flush=True)
    sys.stdin.readline()
    try:
        with DriverLease(store, args.study, Lease.for_this_process(), ttl=args.ttl, force=args.force) as lease:
            loop = StudyLoop(store=store, name=args.study, definition=d, scheduler_factory=factory,
                             sampler=UniformSampler(DIMS, OBJECTIVES, seed=1), executor=InProcessExecutor(),
                             runner=SteadyRunner(args.sleep), compile_config=lambda c: {"plan": {}, **c},
                             budget=Budget(trials=args.budget), policy=FaultPolicy(lease_ttl=args.ttl), lease=lease)
            summary = loop.run(resume=args.resume)
    except (LeaseHeldError, LeaseLostError) as err:
        print(str(err), flush=True)
        return 2
    finally:
        store.close()
    print(json.dumps({"pid": os.getpid(), "status": summary.status.value, "budget_used": summary.budget_used,
                      "warnings": warnings.messages}), flush=True)
    return 0


def _check(store: Store, study: str) -> str | None:
    """What is wrong with one read of the study (each query sees a committed state), or None."""
    results = store.results(study)  # before the trials: every trial a result names is then among them
    trials = store.trials(study)
    store.latest_pareto_snapshot(study)
    numbers = [t.number for t in trials]
    if numbers != list(range(len(numbers))):
        return f"{study}: trial numbers {numbers}"
    keys = [(r.trial_id, r.fidelity) for r in results]
    if len(keys) != len(set(keys)):
        return f"{study}: a result twice"
    if not {r.trial_id for r in results} <= {t.id for t in trials}:
        return f"{study}: a result of an unknown trial"
    return None


def read(args: argparse.Namespace) -> int:
    store = Store(args.url)
    polls, errors, inconsistent = 0, [], []
    try:
        while not select.select([sys.stdin], [], [], 0.2)[0]:
            polls += 1
            try:
                store.list_studies()
                for study in args.studies:
                    problem = _check(store, study)
                    if problem:
                        inconsistent.append(problem)
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
    finally:
        store.close()
    print(json.dumps({"polls": polls, "errors": errors, "inconsistent": inconsistent}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.engine._driver")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("drive")
    run.add_argument("url")
    run.add_argument("study")
    run.add_argument("--budget", type=float, default=10)
    run.add_argument("--sleep", type=float, default=0.0)
    run.add_argument("--ttl", type=float, default=30.0)
    run.add_argument("--force", action="store_true")
    run.add_argument("--resume", action="store_true")
    reader = commands.add_parser("read")
    reader.add_argument("url")
    reader.add_argument("studies", nargs="+")
    args = parser.parse_args(argv)
    return drive(args) if args.command == "drive" else read(args)


if __name__ == "__main__":
    sys.exit(main())
