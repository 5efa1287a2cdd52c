"""The unit of work an executor runs, and what comes back: plain, picklable data (no torch objects).

A task carries everything a worker needs (the recipe as written, the compiled configuration, the
fidelity, the trial folder), so a worker process or a Ray task never reads the study from the store;
it only writes its heartbeat there (`Heartbeat`), so the driver can tell a live job from a lost one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autopeft.status import TrialStatus


@dataclass(frozen=True)
class Heartbeat:
    """Where and how often the job signs of life: `Store.beat_trial(trial_id, attempt_id, worker)`."""

    store_url: str = field(repr=False)  # may hold a password: a logged task must not show it
    trial_id: int
    attempt_id: int
    interval: float = 5.0


@dataclass(frozen=True)
class TrialTask:
    """Train trial ``number`` of ``study`` up to ``fidelity`` (continuing from ``trial_dir`` if it holds a state)."""

    study: str
    number: int
    config: Mapping[str, Any]  # the search-space configuration
    trial_config: Mapping[str, Any] | None  # the compiled `TrialConfig` (plan + training settings)
    recipe: Mapping[str, Any]  # the recipe as written
    recipe_dir: str  # where the recipe's relative paths resolve
    fidelity: int
    trial_dir: str | None = None
    threads: int | None = None  # CPU threads for the job (the executor's choice; None: the recipe's)
    device: str | None = None  # `--device` (None: the recipe's)
    options: Mapping[str, Any] = field(default_factory=dict)
    heartbeat: Heartbeat | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """A finished job: its objective values at ``fidelity`` (if it got there) and every other measure."""

    number: int
    status: TrialStatus  # COMPLETE (it reported) or FAILED
    fidelity: int
    objectives: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.COMPLETE
