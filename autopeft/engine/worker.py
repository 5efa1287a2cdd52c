"""Runs one `TrialTask` with the trial job, in whatever process the executor chose.

Every error becomes a failed `TrialOutcome` with a one-line reason: a study goes on when one
configuration cannot train (out of memory, a diverging loss, a plan the model cannot take).

While the job runs, a thread writes its heartbeat to the store (`Heartbeat`), and the trial's folder is
locked (`flock`), so a job of a resumed study never trains into a checkpoint that a job of an old run
still writes to: it waits for the old one to end (its driver is gone, so it ends within a second).
A trial folder given as a URI (``--runs-dir s3://...``) trains in a local copy that `train.storage`
pulls before the job and pushes after every save, so the trial can resume on any node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autopeft.engine.task import Heartbeat, TrialOutcome, TrialTask
from autopeft.errors import TrialFailedError, describe_exception
from autopeft.status import TrialStatus
from autopeft.train.storage import TrialFolder, open_trial

log = logging.getLogger(__name__)

#: How long a job waits for another process to let go of its trial folder before it gives up.
FOLDER_LOCK_WAIT_SECONDS = 60.0
_stores: dict[str, Any] = {}  # one Store per URL per worker process
_placement = ""  # ":gpu<N>" while this process runs a job on the GPU its pool gave it (`placed_on`)


def worker_name() -> str:
    """``host:pid``, and ``:gpu<N>`` while the job runs on a GPU its pool assigned: where a trial ran."""
    return f"{socket.gethostname()}:{os.getpid()}{_placement}"


@contextmanager
def placed_on(tag: str) -> Iterator[None]:
    """Name this worker ``host:pid<tag>`` (its heartbeats and outcome) while the job inside runs."""
    global _placement
    before, _placement = _placement, tag
    try:
        yield
    finally:
        _placement = before


def run_trial(task: TrialTask) -> TrialOutcome:
    """Train the task's configuration to its fidelity and report score and costs (never raises)."""
    try:
        folder = open_trial(task.trial_dir) if task.trial_dir else None
        with _beating(task.heartbeat), _folder_lock(None if folder is None else str(folder.local)):
            return _run(task, folder)
    except Exception as err:  # the study records the failure and goes on
        log.info("trial %d failed: %s", task.number, err, exc_info=log.isEnabledFor(logging.DEBUG))
        return TrialOutcome(task.number, TrialStatus.FAILED, task.fidelity, error=describe_exception(err),
                            worker=worker_name())


@contextmanager
def _beating(heartbeat: Heartbeat | None) -> Iterator[None]:
    """Beat `Store.beat_trial` every ``interval`` seconds from a thread, until the job ends."""
    if heartbeat is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        from autopeft.store import Store

        # Not pooled: a beat holds a server connection for milliseconds, not for the whole trial (see `Store`).
        store = (_stores.get(heartbeat.store_url)
                 or _stores.setdefault(heartbeat.store_url, Store(heartbeat.store_url, pooled=False)))
        while True:
            try:
                if not store.beat_trial(heartbeat.trial_id, heartbeat.attempt_id, worker_name()):
                    return  # the driver gave this job up; it will be stopped
            except Exception as err:  # a missed beat is not fatal; the grace period covers a few
                log.warning("trial heartbeat failed: %s", describe_exception(err))
            if stop.wait(heartbeat.interval):
                return

    thread = threading.Thread(target=beat, name="autopeft-trial-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


@contextmanager
def _folder_lock(trial_dir: str | None) -> Iterator[None]:
    """Hold an exclusive lock on the trial folder (released by the kernel if this process dies)."""
    if trial_dir is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    folder = Path(trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        deadline = time.monotonic() + FOLDER_LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrialFailedError(f"{folder} is still in use by another process after "
                                           f"{FOLDER_LOCK_WAIT_SECONDS:.0f} s; is an old run of this study "
                                           "alive?") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(task: TrialTask, folder: TrialFolder | None) -> TrialOutcome:
    from autopeft.space.config import TrialConfig
    from autopeft.train.job import TrialJob
    from autopeft.train.recipe import TrialRecipe
    from autopeft.train.resources import with_resources
    from autopeft.train.verbosity import quiet_library_warnings
    from autopeft.yamlio import validate

    quiet_library_warnings()  # a spawned worker starts without the CLI's warning filters
    recipe = validate(TrialRecipe, dict(task.recipe), source="study recipe")
    recipe._source_dir = Path(task.recipe_dir)
    recipe = with_resources(recipe, threads=task.threads, device=task.device)
    config = TrialConfig.model_validate(dict(task.trial_config or {}))
    if folder is None:
        result = TrialJob(recipe, config, config_source=f"trial {task.number}").run(task.fidelity)
    else:  # under the folder lock: a URI trial's state is pulled here and pushed after every save
        folder.local.mkdir(parents=True, exist_ok=True)
        with folder.checked_out() as local:
            result = TrialJob(recipe, config, trial_dir=local, config_source=f"trial {task.number}",
                              on_save=folder.push).run(task.fidelity)
    metrics = result.model_dump(mode="json")
    if folder is not None:
        metrics["trial_dir"] = str(folder.location)  # where export (and any node) finds the checkpoint
    if result.status is TrialStatus.FAILED or result.score is None:
        return TrialOutcome(task.number, TrialStatus.FAILED, result.fidelity, metrics=metrics,
                            error=result.error or "no score", worker=worker_name())
    objectives = {"score": float(result.score), "trainable_params": float(result.trainable_params),
                  "train_seconds": float(result.train_seconds), "peak_memory_mb": float(result.peak_memory_mb)}
    return TrialOutcome(task.number, TrialStatus.COMPLETE, result.fidelity, objectives, metrics, worker=worker_name())
