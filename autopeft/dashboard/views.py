"""What the dashboard's pages draw: plain, frozen data read from the store once per change of a study.

`autopeft.dashboard.data` builds these with a few aggregate queries (never one per trial), and
`autopeft.dashboard.charts` turns them into figures; neither imports Streamlit, so both are tested
without a browser. Nothing here starts work or writes to the store.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autopeft.engine.definition import StudyDefinition
from autopeft.engine.front import Front
from autopeft.status import AttemptOutcome, TrialStatus


@dataclass(frozen=True)
class StudySummaryRow:
    """One line of the studies page."""

    name: str
    status: str  # running | paused | complete | failed
    strategy: str
    objectives: tuple[str, ...]
    budget_total: float | None  # full-fidelity trial equivalents, as the study was created (None: time only)
    budget_used: float
    counts: dict[str, int]  # trial status value -> count (every TrialStatus value present)
    best_score: float | None  # best full-fidelity score of a complete trial
    hypervolume: float | None  # the latest Pareto snapshot's
    created_at: datetime
    last_activity: datetime  # the latest of the study's update, trial and result times


@dataclass(frozen=True)
class ResultPoint:
    """One result: a trial's objective values (and other metrics) at one fidelity."""

    trial_number: int
    fidelity: int
    objectives: dict[str, float]
    metrics: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class TrialView:
    """A trial as the pages show it: its status, where it got, and its values there."""

    id: int
    number: int
    status: TrialStatus
    config: dict[str, Any]
    plan: dict[str, Any] | None
    bracket: int | None
    worker: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    fidelity: int | None  # the highest fidelity it reported (None: no result yet)
    objectives: dict[str, float]  # at that fidelity ({} without a result)
    on_front: bool  # a complete trial on the current front
    training_to: int | None = None  # a running trial: the fidelity its current job trains to

    @property
    def full(self) -> bool:
        """Reached the study's maximum fidelity (only these are comparable on a front)."""
        return self.status is TrialStatus.COMPLETE


@dataclass(frozen=True)
class SnapshotPoint:
    """One stored Pareto snapshot: the front after a full-fidelity result, with the budget spent by then."""

    created_at: datetime
    hypervolume: float | None
    trial_numbers: tuple[int, ...]
    budget_used: float  # full-trial equivalents of the results stored up to this snapshot
    seconds: float  # since the study's first trial started


@dataclass(frozen=True)
class AttemptPoint:
    """One job of a trial (see `autopeft.store.AttemptRecord`)."""

    trial_number: int
    number: int
    fidelity: int
    resume_from: int | None
    worker: str | None
    outcome: AttemptOutcome
    error: str | None
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class StudyView:
    """Everything the study page draws, read at one moment (``version`` says which)."""

    name: str
    status: str
    strategy: str
    definition: StudyDefinition  # space, recipe, objectives (with reference points), options
    trials: tuple[TrialView, ...]  # by number
    results: tuple[ResultPoint, ...]  # by trial number, then fidelity
    snapshots: tuple[SnapshotPoint, ...]  # oldest first
    attempts: tuple[AttemptPoint, ...]  # by trial number, then attempt number
    front: Front  # the current front and every full-fidelity trial (autopeft.engine.front)
    rungs: tuple[int, ...]  # the fidelities of the study's Hyperband rungs (just max for full-fidelity strategies)
    base_params: float  # the base model's parameter count (the trainable_params reference point)
    budget_total: float | None
    budget_used: float
    version: tuple[Any, ...] = field(default=())  # changes whenever the study changes: the cache key
    driver: str | None = None  # `host:pid` of the driver running the study (its lease), if any
    driver_heartbeat: datetime | None = None  # its last heartbeat (database clock, UTC)
    detail: bool = True  # False: metrics only at full fidelity, attempts only running ones (the study page)
    #: Plan lines already written, by trial id, shared with later views of the same store (a stored plan never
    #: changes): a dashboard writes the 10,000 lines of a large study once, not again after every result.
    plan_lines: MutableMapping[int, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def max_fidelity(self) -> int:
        return self.definition.max_fidelity

    def plan_line(self, trial_id: int, plan: Mapping[str, Any] | None) -> str:
        """Trial ``trial_id``'s plan in one line (`L1-2 lora r8 qv`; "" without a plan), written once."""
        line = self.plan_lines.get(trial_id)
        if line is None:
            from autopeft.dashboard.rows import plan_line

            line = self.plan_lines[trial_id] = plan_line(plan)
        return line

    def trial(self, number: int) -> TrialView | None:
        return next((t for t in self.trials if t.number == number), None)
