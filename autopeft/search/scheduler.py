"""Schedulers: which configuration runs to which fidelity next, and what to do with each result.

This module holds the interface and the bookkeeping every scheduler shares; the schedulers are in
`autopeft.search.hyperband` (multi-objective Hyperband and ASHA) and `autopeft.search.full_fidelity`.

The interface follows Syne Tune's ``optimizer/scheduler.py``: the engine asks `Scheduler.suggest` for
work whenever a worker is free and reports every result through `Scheduler.on_trial_result`, which
answers with a `Decision`. Configurations come from a supplied ``propose(n)`` callable (the sampler),
so a scheduler never knows the search space, and the multi-objective ranking is a small strategy
object (`ParetoRanking`), so one- and many-objective studies run the same code.

The schedulers assign trial ids (0, 1, 2, ... in the order trials are started) and keep their state in
memory; the store records what they decided. Plain Python and numpy: no torch, no Ray.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from autopeft.errors import ConfigError
from autopeft.search.pareto import Objective, TieBreak, rank_for_promotion, reference_point, to_minimization
from autopeft.status import TrialStatus

Config = dict[str, Any]
Propose = Callable[[int], Sequence[Config]]


class Decision(str, enum.Enum):
    """What the engine does with a running trial after a result."""

    CONTINUE = "continue"  # keep training towards the suggested fidelity
    PAUSE = "pause"  # stop the job, keep the checkpoint: a later suggestion may resume it
    STOP = "stop"  # stop for good: finished at its last fidelity, failed, or not worth resuming


class SuggestionKind(str, enum.Enum):
    """Whether a suggestion starts a new trial or resumes a paused one at a higher fidelity."""

    START = "start"
    RESUME = "resume"


@dataclass(frozen=True)
class Suggestion:
    """One unit of work: train ``trial_id`` with ``config`` up to ``fidelity``.

    For a resumed trial, ``resume_from`` is the fidelity it already reached (its checkpoint).
    ``bracket`` and ``rung`` (the index of ``fidelity`` in the study's rung levels) are for the store
    and the dashboard; the engine needs only the trial, the configuration and the fidelity.
    """

    kind: SuggestionKind
    trial_id: int
    config: Mapping[str, Any]
    fidelity: int
    bracket: int = 0
    rung: int = 0
    resume_from: int | None = None


@dataclass(frozen=True)
class RestoredTrial:
    """What `Scheduler.restore` needs of one stored trial; ``results`` are (fidelity, objectives) in arrival order."""

    trial_id: int
    config: Mapping[str, Any]
    status: TrialStatus  # as stored; waiting and running both mean "was in flight"
    bracket: int | None = None
    results: Sequence[tuple[int, Mapping[str, float]]] = ()


class Ranking(Protocol):
    """Picks the results that move on from a rung; `ParetoRanking` is the one we ship."""

    def top(self, k: int, results: Sequence[Mapping[str, float]]) -> list[int]:
        """Indices into ``results`` of the best ``k``, best first."""
        ...


class ParetoRanking:
    """Non-dominated sorting with a tie-break over all objectives (Syne Tune's MOASHA priority).

    Raw results are converted with `to_minimization`; the hypervolume tie-break is measured from the
    objectives' fixed reference point. With one objective this is ordinary sorting (ties by order of
    arrival), so a single-objective study is plain ASHA / Hyperband.
    """

    def __init__(self, objectives: Sequence[Objective], *, tie_break: TieBreak | str = TieBreak.CROWDING) -> None:
        if not objectives:
            raise ConfigError("at least one objective is needed", field="objectives")
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ConfigError(f"objective names must be unique, got {names}", field="objectives")
        self.objectives = tuple(objectives)
        self.tie_break = TieBreak(tie_break)
        self._reference = reference_point(self.objectives)

    def points(self, results: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The ``(n, m)`` all-minimised array of ``results`` in objective order."""
        raw = np.array([[r[o.name] for o in self.objectives] for r in results], dtype=np.float64)
        return to_minimization(raw.reshape(len(results), len(self.objectives)), [o.direction for o in self.objectives])

    def adds_hypervolume(self, results: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Per result, whether it beats the reference point in every objective: the only ones that add hypervolume."""
        return self._beats_reference(self.points(results))

    def _beats_reference(self, points: np.ndarray) -> np.ndarray:
        return np.all(points < self._reference, axis=1)

    def top(self, k: int, results: Sequence[Mapping[str, float]]) -> list[int]:
        """Indices of the ``k`` results `rank_for_promotion` picks, best first.

        A result no better than the reference in some objective (a score at chance) adds no hypervolume,
        so it ranks after every result that adds some: otherwise the smallest trial, never dominated, would
        be promoted for its size alone, however little it learnt.
        """
        if k <= 0 or not results:
            return []
        points = self.points(results)
        useful = self._beats_reference(points)
        order: list[int] = []
        for group in (np.flatnonzero(useful), np.flatnonzero(~useful)):
            if len(group) and len(order) < k:
                picked = rank_for_promotion(points[group], k - len(order), self.tie_break, reference=self._reference)
                order += [int(group[i]) for i in picked]
        return order


class Scheduler(abc.ABC):
    """Decides what runs next (`suggest`) and reacts to results (`on_trial_result`).

    ``suggest`` returning None means "nothing to start now", not "finished": the engine calls it
    again after the next result, and the study is over when it returns None with no trial running.
    """

    @abc.abstractmethod
    def suggest(self) -> Suggestion | None:
        """The next unit of work for a free worker, or None."""

    @abc.abstractmethod
    def on_trial_result(self, trial_id: int, fidelity: int, objectives: Mapping[str, float]) -> Decision:
        """Record a result of a running trial at ``fidelity`` and say what the trial does next."""

    def on_trial_error(self, trial_id: int) -> None:  # noqa: B027 - a hook, safe to ignore
        """A trial failed; by default nothing changes."""

    @abc.abstractmethod
    def restore(self, trials: Sequence[RestoredTrial]) -> list[Suggestion]:
        """Rebuild the state of a fresh scheduler from stored trials (ids 0..n-1, in order).

        Returns the work that was in flight when the study stopped, to be run again: each such trial
        continues towards the fidelity it was training to, from its last checkpoint.
        """


# -- bookkeeping shared by the scheduler implementations (hyperband.py, full_fidelity.py) --------------


@dataclass
class TrialEntry:
    config: Config
    bracket: int
    target: int  # the fidelity the current job trains to
    status: TrialStatus = TrialStatus.RUNNING  # complete: never runs again
    reported: dict[int, dict[str, float]] = field(default_factory=dict)


class TrialBook:
    """Trial ids, configurations and the propose/max_trials bookkeeping every scheduler shares."""

    def __init__(self, propose: Propose, max_trials: int | None) -> None:
        if max_trials is not None and (isinstance(max_trials, bool) or max_trials < 1):
            raise ConfigError(f"must be None or an integer >= 1, got {max_trials!r}", field="max_trials")
        self.propose = propose
        self.max_trials = max_trials
        self.trials: dict[int, TrialEntry] = {}

    def new_config(self) -> Config | None:
        """One configuration from the source, or None when the budget or the source is exhausted."""
        if self.max_trials is not None and len(self.trials) >= self.max_trials:
            return None
        configs = list(self.propose(1))
        return dict(configs[0]) if configs else None

    def restorable(self, trials: Sequence[RestoredTrial]) -> list[RestoredTrial]:
        """Stored trials in id order, checked: a scheduler restores once, from ids 0..n-1."""
        if self.trials:
            raise RuntimeError("restore() needs a fresh scheduler")
        ordered = sorted(trials, key=lambda t: t.trial_id)
        for expected, stored in enumerate(ordered):
            if stored.trial_id != expected:
                raise ValueError(f"stored trial ids must be 0..n-1; trial {expected} is missing")
        return ordered

    def running(self, trial_id: int) -> TrialEntry:
        """The trial a result is reported for; it must have been started and not failed or stopped."""
        if trial_id not in self.trials:
            raise KeyError(f"unknown trial {trial_id}")
        trial = self.trials[trial_id]
        if trial.status is not TrialStatus.RUNNING:
            raise ValueError(f"trial {trial_id} is {trial.status.value}, not running")
        return trial

    def accept(self, trial_id: int, fidelity: int, objectives: Mapping[str, float], names: Sequence[str],
               max_fidelity: int) -> tuple[TrialEntry, dict[str, float] | None]:
        """The checks every scheduler makes of a result: the running trial and its clean values.

        The values are None (and the trial is marked failed) when an objective is NaN.
        """
        trial = self.running(trial_id)
        if fidelity > max_fidelity:
            raise ValueError(f"trial {trial_id}: fidelity {fidelity} exceeds the maximum {max_fidelity}")
        values = clean_objectives(objectives, names, trial_id)
        if values is None:
            trial.status = TrialStatus.FAILED
        return trial, values

    def mark_failed(self, trial_id: int) -> None:
        """A failed trial is never run or promoted again (unknown ids raise KeyError)."""
        if trial_id not in self.trials:
            raise KeyError(f"unknown trial {trial_id}")
        self.trials[trial_id].status = TrialStatus.FAILED


def clean_objectives(objectives: Mapping[str, float], names: Sequence[str], trial_id: int) -> dict[str, float] | None:
    """The objective values as floats, or None if any is NaN (a diverged trial counts as failed)."""
    missing = [n for n in names if n not in objectives]
    if missing:
        raise ValueError(f"trial {trial_id}: result lacks objectives {missing}")
    values = {n: float(objectives[n]) for n in names}
    return None if any(math.isnan(v) for v in values.values()) else values
