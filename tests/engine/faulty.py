"""Trial runners that misbehave on purpose, for the executor contract and the fault tests.

Module-level functions, so spawned pool workers can import them. A task's ``options`` steer them:
``sleep`` (seconds before reporting), ``pid_file`` (where the worker writes its pid first), ``hang_on``
(trial numbers that never finish), ``silent_once`` (a folder: the first attempt of each trial sleeps
without a heartbeat and leaves a marker there; the retry reports at once).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.status import TrialStatus
from tests.engine.synthetic import objectives


def _report(task: TrialTask) -> TrialOutcome:
    return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity, objectives(task.config, task.fidelity),
                        {"pid": os.getpid()}, worker=str(os.getpid()))


def echo_runner(task: TrialTask) -> TrialOutcome:
    """Writes its pid (if asked), sleeps (if asked), reports the synthetic objectives."""
    if task.options.get("pid_file"):
        Path(task.options["pid_file"]).write_text(str(os.getpid()))
    time.sleep(float(task.options.get("sleep", 0)))
    return _report(task)


def device_runner(task: TrialTask) -> TrialOutcome:
    """Reports the device the executor handed it (``task.device``) and the worker name a heartbeat would send.

    With ``gather`` (a folder) and ``together`` (a count), it first waits until that many trials are running at
    once. The device string is only passed on, never given to torch: the tests run where no GPU exists.
    """
    from autopeft.engine.worker import worker_name

    if task.options.get("gather"):
        folder = Path(task.options["gather"])
        (folder / str(task.number)).write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while len(list(folder.iterdir())) < int(task.options["together"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    outcome = echo_runner(task)
    return replace(outcome, metrics={**outcome.metrics, "device": task.device, "heartbeat_name": worker_name()})


def raising_runner(task: TrialTask) -> TrialOutcome:
    raise RuntimeError("boom")


def dying_runner(task: TrialTask) -> TrialOutcome:
    """The worker process dies at once, as one killed for memory would (only trials in ``die_on``, if given)."""
    if task.number in task.options.get("die_on", (task.number,)):
        os.kill(os.getpid(), signal.SIGKILL)
    return _report(task)


def hanging_runner(task: TrialTask) -> TrialOutcome:
    """Trials named in ``hang_on`` never finish (a deadlock); the others report."""
    if task.options.get("pid_file"):
        Path(task.options["pid_file"]).write_text(str(os.getpid()))
    if task.number in task.options.get("hang_on", ()):
        time.sleep(3600)
    return _report(task)


def nan_runner(task: TrialTask) -> TrialOutcome:
    """Trial 1 reports a NaN score (a model that diverged without raising); the others report."""
    outcome = _report(task)
    if task.number == 1:
        return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity,
                            {**outcome.objectives, "score": float("nan")}, worker=outcome.worker)
    return outcome


def silent_once_runner(task: TrialTask) -> TrialOutcome:
    """The first attempt of each trial goes silent (no heartbeat, as a frozen worker); the retry reports."""
    marker = Path(task.options["silent_once"]) / f"trial_{task.number}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(3600)
    return _report(task)


@dataclass(frozen=True)
class WithOptions:
    """A runner with fixed task options (picklable, for a loop that builds its own tasks)."""

    runner: Callable[[TrialTask], TrialOutcome]
    options: Mapping[str, Any]

    def __call__(self, task: TrialTask) -> TrialOutcome:
        return self.runner(replace(task, options={**task.options, **self.options}))
