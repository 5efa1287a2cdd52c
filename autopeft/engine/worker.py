"""Runs one `TrialTask` with the trial job, in whatever process the executor chose.

Every error becomes a failed `TrialOutcome` with a one-line reason: a study goes on when one
configuration cannot train (out of memory, a diverging loss, a plan the model cannot take).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from autopeft.engine.task import FAILED, OK, TrialOutcome, TrialTask
from autopeft.errors import describe_exception

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_trial(task: TrialTask) -> TrialOutcome:
    """Train the task's configuration to its fidelity and report score and costs (never raises)."""
    try:
        return _run(task)
    except Exception as err:  # the study records the failure and goes on
        log.info("trial %d failed: %s", task.number, err, exc_info=log.isEnabledFor(logging.DEBUG))
        return TrialOutcome(task.number, FAILED, task.fidelity, error=describe_exception(err), worker=worker_name())


def _run(task: TrialTask) -> TrialOutcome:
    from autopeft.space.config import TrialConfig
    from autopeft.train.job import TrialJob
    from autopeft.train.recipe import TrialRecipe
    from autopeft.yamlio import validate

    recipe = validate(TrialRecipe, dict(task.recipe), source="study recipe")
    recipe._source_dir = Path(task.recipe_dir)
    if task.threads is not None:
        recipe = recipe.model_copy(update={"training": recipe.training.model_copy(update={"threads": task.threads})})
    config = TrialConfig.model_validate(dict(task.trial_config or {}))
    trial_dir = Path(task.trial_dir) if task.trial_dir else None
    if trial_dir is not None:
        trial_dir.mkdir(parents=True, exist_ok=True)
    result = TrialJob(recipe, config, trial_dir=trial_dir, config_source=f"trial {task.number}").run(task.fidelity)
    metrics = result.model_dump(mode="json")
    if trial_dir is not None:
        metrics["trial_dir"] = str(trial_dir)
    if result.status.value == "failed" or result.score is None:
        return TrialOutcome(task.number, FAILED, result.fidelity, metrics=metrics,
                            error=result.error or "no score", worker=worker_name())
    objectives = {"score": float(result.score), "trainable_params": float(result.trainable_params),
                  "train_seconds": float(result.train_seconds), "peak_memory_mb": float(result.peak_memory_mb)}
    return TrialOutcome(task.number, OK, result.fidelity, objectives, metrics, worker=worker_name())
