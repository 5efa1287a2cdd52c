"""`FullFidelity`: no early stopping, every trial trains to the maximum fidelity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autopeft.search.pareto import Objective
from autopeft.search.rungs import validate_fidelities
from autopeft.search.scheduler import (
    Decision,
    Propose,
    RestoredTrial,
    Scheduler,
    Suggestion,
    SuggestionKind,
    TrialBook,
    TrialEntry,
)
from autopeft.status import TrialStatus


class FullFidelity(Scheduler):
    """No early stopping: every trial runs to ``max_fidelity`` (the `random`, `tpe`, `nsga2`, `mobo` strategies)."""

    def __init__(
        self,
        *,
        propose: Propose,
        objectives: Sequence[Objective],
        max_fidelity: int,
        max_trials: int | None = None,
    ) -> None:
        validate_fidelities(max_fidelity, max_fidelity, 2)
        self.objectives = tuple(objectives)
        self.max_fidelity = max_fidelity
        self._book = TrialBook(propose, max_trials)

    def suggest(self) -> Suggestion | None:
        """A new trial at the maximum fidelity, or None once the budget or the source is exhausted."""
        config = self._book.new_config()
        if config is None:
            return None
        tid = len(self._book.trials)
        self._book.trials[tid] = TrialEntry(config=config, bracket=0, target=self.max_fidelity)
        return Suggestion(SuggestionKind.START, tid, dict(config), self.max_fidelity)

    def on_trial_result(self, trial_id: int, fidelity: int, objectives: Mapping[str, float]) -> Decision:
        """CONTINUE below the maximum, STOP at it (or on a NaN objective, which counts as a failure)."""
        trial, values = self._book.accept(trial_id, fidelity, objectives, [o.name for o in self.objectives],
                                          self.max_fidelity)
        if values is None:
            return Decision.STOP
        trial.reported[fidelity] = values
        if fidelity < self.max_fidelity:
            return Decision.CONTINUE
        trial.status = TrialStatus.COMPLETE
        return Decision.STOP

    def on_trial_error(self, trial_id: int) -> None:
        """Mark the trial failed (unknown ids raise KeyError)."""
        self._book.mark_failed(trial_id)

    def restore(self, trials: Sequence[RestoredTrial]) -> list[Suggestion]:
        """Statuses from stored trials; trials that were running start again from their checkpoint."""
        resubmit = []
        for stored in self._book.restorable(trials):
            trial = TrialEntry(config=dict(stored.config), bracket=0, target=self.max_fidelity)
            trial.reported = {f: dict(v) for f, v in stored.results}
            self._book.trials[stored.trial_id] = trial
            done = self.max_fidelity in trial.reported
            if stored.status is TrialStatus.FAILED:
                trial.status = TrialStatus.FAILED
            elif done or stored.status in (TrialStatus.COMPLETE, TrialStatus.PRUNED):
                trial.status = TrialStatus.COMPLETE
            else:  # running, or paused (a full-fidelity study never pauses, but a crash may leave one)
                trial.status = TrialStatus.RUNNING
                reached = max(trial.reported, default=None)
                kind = SuggestionKind.START if reached is None else SuggestionKind.RESUME
                resubmit.append(Suggestion(kind, stored.trial_id, dict(trial.config), self.max_fidelity,
                                           resume_from=reached))
        return resubmit
