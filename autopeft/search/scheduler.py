"""Schedulers: which configuration runs to which fidelity next, and what to do with each result.

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
from autopeft.search.rungs import (
    bracket_distribution,
    current_rung,
    promotion_quota,
    rung_levels,
    validate_fidelities,
)

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


class TrialState(str, enum.Enum):
    """A stored trial's state as `Scheduler.restore` reads it (the store's statuses, folded)."""

    RUNNING = "running"  # was in flight when the study stopped: it runs again towards its target
    PAUSED = "paused"  # stopped at a rung; may still be promoted
    FINISHED = "finished"  # complete or pruned: never runs again
    FAILED = "failed"


@dataclass(frozen=True)
class RestoredTrial:
    """What `Scheduler.restore` needs of one stored trial; ``results`` are (fidelity, objectives) in arrival order."""

    trial_id: int
    config: Mapping[str, Any]
    state: TrialState
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

    def top(self, k: int, results: Sequence[Mapping[str, float]]) -> list[int]:
        """Indices of the ``k`` results `rank_for_promotion` picks, best first."""
        if k <= 0 or not results:
            return []
        picked = rank_for_promotion(self.points(results), k, self.tie_break, reference=self._reference)
        return [int(i) for i in picked]


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


class _Status(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _Trial:
    config: Config
    bracket: int
    target: int  # the fidelity the current job trains to
    status: _Status = _Status.RUNNING
    reported: dict[int, dict[str, float]] = field(default_factory=dict)


class _TrialBook:
    """Trial ids, configurations and the propose/max_trials bookkeeping every scheduler shares."""

    def __init__(self, propose: Propose, max_trials: int | None) -> None:
        if max_trials is not None and (isinstance(max_trials, bool) or max_trials < 1):
            raise ConfigError(f"must be None or an integer >= 1, got {max_trials!r}", field="max_trials")
        self.propose = propose
        self.max_trials = max_trials
        self.trials: dict[int, _Trial] = {}

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

    def running(self, trial_id: int) -> _Trial:
        """The trial a result is reported for; it must have been started and not failed or stopped."""
        if trial_id not in self.trials:
            raise KeyError(f"unknown trial {trial_id}")
        trial = self.trials[trial_id]
        if trial.status is not _Status.RUNNING:
            raise ValueError(f"trial {trial_id} is {trial.status.value}, not running")
        return trial


def _clean(objectives: Mapping[str, float], names: Sequence[str], trial_id: int) -> dict[str, float] | None:
    """The objective values as floats, or None if any is NaN (a diverged trial counts as failed)."""
    missing = [n for n in names if n not in objectives]
    if missing:
        raise ValueError(f"trial {trial_id}: result lacks objectives {missing}")
    values = {n: float(objectives[n]) for n in names}
    return None if any(math.isnan(v) for v in values.values()) else values


class MultiObjectiveHyperband(Scheduler):
    """Asynchronous multi-objective Hyperband (Hyperband-ASHA style) with promotion, as Syne Tune's.

    Every new trial is assigned a bracket ``s`` (``bracket_assignment="hyperband"``: sampled with
    `bracket_distribution`, seeded; ``"round_robin"``: 0, 1, ..., s_max, 0, ...) and starts at rung
    ``s``. Brackets never wait for each other: within a bracket, a trial paused at rung ``r`` is
    promoted to ``r + 1`` once it is among the top ``floor(n_r / eta)`` of the ``n_r`` results that
    bracket has at rung ``r``, ranked by ``ranking`` over all objectives. `suggest` returns such a
    promotion first (highest rung first, then lowest bracket), else starts a new trial.

    A failed trial (`on_trial_error`, or a NaN objective) is never promoted; its earlier results stay
    in their rungs' populations, since they were measured, so the slot it held is not handed on.
    """

    def __init__(
        self,
        *,
        propose: Propose,
        objectives: Sequence[Objective],
        min_fidelity: int,
        max_fidelity: int,
        eta: float = 3,
        tie_break: TieBreak | str = TieBreak.CROWDING,
        ranking: Ranking | None = None,
        max_trials: int | None = None,
        bracket_assignment: str = "hyperband",
        seed: int | None = None,
    ) -> None:
        validate_fidelities(min_fidelity, max_fidelity, eta)
        if bracket_assignment not in ("hyperband", "round_robin"):
            raise ConfigError(
                f"must be 'hyperband' or 'round_robin', got {bracket_assignment!r}", field="bracket_assignment"
            )
        self.objectives = tuple(objectives)
        self.ranking: Ranking = ranking if ranking is not None else ParetoRanking(objectives, tie_break=tie_break)
        self.eta = eta
        self.levels = rung_levels(min_fidelity, max_fidelity, eta)
        self.bracket_assignment = bracket_assignment
        self._book = _TrialBook(propose, max_trials)
        self._rng = np.random.default_rng(seed)
        self._probs = bracket_distribution(self.num_brackets, eta)
        # (bracket, rung) -> trial id -> result, in order of arrival; and who already moved on
        self._rungs: dict[tuple[int, int], dict[int, dict[str, float]]] = {}
        self._promoted: dict[tuple[int, int], set[int]] = {}
        self._top_cache: dict[tuple[int, int], tuple[int, list[int]]] = {}  # rung -> (its size, top trial ids)

    @property
    def num_brackets(self) -> int:
        """How many brackets new trials are spread over (1 for ASHA)."""
        return len(self.levels)

    @property
    def max_fidelity(self) -> int:
        """The last rung: where trials finish."""
        return self.levels[-1]

    def _next_bracket(self) -> int:
        """The bracket of the next new trial."""
        if self.num_brackets == 1:
            return 0
        if self.bracket_assignment == "round_robin":
            return len(self._book.trials) % self.num_brackets
        return int(self._rng.choice(self.num_brackets, p=self._probs))

    def rung_results(self, rung: int, bracket: int = 0) -> dict[int, dict[str, float]]:
        """A copy of the results recorded at ``rung`` of ``bracket``, by trial id, in order of arrival."""
        return {tid: dict(r) for tid, r in self._rungs.get((bracket, rung), {}).items()}

    def _top(self, bracket: int, rung: int, k: int) -> list[int]:
        """The ids of the top ``k`` at a rung; ranked again only when the rung has grown, since it only grows."""
        table = self._rungs[(bracket, rung)]
        cached = self._top_cache.get((bracket, rung))
        if cached is None or cached[0] != len(table):
            ids = list(table)
            cached = (len(table), [ids[i] for i in self.ranking.top(k, [table[t] for t in ids])])
            self._top_cache[(bracket, rung)] = cached
        return cached[1]

    def _promotion(self) -> Suggestion | None:
        """The best paused trial that the rule lets move on, scanning the highest rungs first."""
        keys = sorted(self._rungs, key=lambda br: (-br[1], br[0]))
        for bracket, rung in keys:
            if rung >= len(self.levels) - 1:
                continue
            k = promotion_quota(len(self._rungs[(bracket, rung)]), self.eta)
            promoted = self._promoted.setdefault((bracket, rung), set())
            if k <= len(promoted):
                continue
            for tid in self._top(bracket, rung, k):
                trial = self._book.trials[tid]
                if tid in promoted or trial.status is not _Status.PAUSED:
                    continue
                promoted.add(tid)
                trial.status = _Status.RUNNING
                trial.target = self.levels[rung + 1]
                return Suggestion(
                    SuggestionKind.RESUME, tid, dict(trial.config), trial.target, bracket, rung + 1, self.levels[rung]
                )
        return None

    def suggest(self) -> Suggestion | None:
        """A promotion if one is due, else a new trial at the lowest rung of its bracket, else None."""
        promotion = self._promotion()
        if promotion is not None:
            return promotion
        config = self._book.new_config()
        if config is None:
            return None
        bracket = self._next_bracket()
        tid = len(self._book.trials)
        self._book.trials[tid] = _Trial(config=config, bracket=bracket, target=self.levels[bracket])
        return Suggestion(SuggestionKind.START, tid, dict(config), self.levels[bracket], bracket, bracket)

    def on_trial_result(self, trial_id: int, fidelity: int, objectives: Mapping[str, float]) -> Decision:
        """Record rung results; PAUSE at a rung below max, STOP at max, CONTINUE in between."""
        trial = self._book.running(trial_id)
        if fidelity > self.max_fidelity:
            raise ValueError(f"trial {trial_id}: fidelity {fidelity} exceeds the maximum {self.max_fidelity}")
        values = _clean(objectives, [o.name for o in self.objectives], trial_id)
        if values is None:
            trial.status = _Status.FAILED
            return Decision.STOP
        rung = current_rung(fidelity, self.levels)
        if rung >= trial.bracket and fidelity == self.levels[rung] and fidelity not in trial.reported:
            trial.reported[fidelity] = values
            self._rungs.setdefault((trial.bracket, rung), {})[trial_id] = values
        if fidelity < trial.target:
            return Decision.CONTINUE
        if fidelity >= self.max_fidelity:
            trial.status = _Status.DONE
            return Decision.STOP
        trial.status = _Status.PAUSED
        return Decision.PAUSE

    def on_trial_error(self, trial_id: int) -> None:
        """Mark the trial failed so it is never promoted (unknown ids raise KeyError)."""
        if trial_id not in self._book.trials:
            raise KeyError(f"unknown trial {trial_id}")
        self._book.trials[trial_id].status = _Status.FAILED

    def restore(self, trials: Sequence[RestoredTrial]) -> list[Suggestion]:
        """Rungs, promotions and statuses from stored trials; the bracket draws continue from a fresh seed.

        A trial's bracket is the stored one, or the rung of its first result; a trial with neither
        (it had not reported yet) is re-assigned one. Rung populations are filled in the order the
        results arrived, so the promotion quota and ranking see what they saw before the stop.
        """
        arrivals: list[tuple[int, int, int, dict[str, float]]] = []  # (order, trial, rung, values)
        resubmit: list[Suggestion] = []
        names = [o.name for o in self.objectives]
        for stored in self._book.restorable(trials):
            reached = [current_rung(f, self.levels) for f, _ in stored.results]
            bracket = stored.bracket if stored.bracket is not None else min(reached, default=None)
            if bracket is None:
                bracket = self._next_bracket()
            top = max(reached, default=-1)
            target = self.levels[bracket] if top < bracket else self.levels[min(top + 1, len(self.levels) - 1)]
            trial = _Trial(config=dict(stored.config), bracket=bracket, target=target)
            self._book.trials[stored.trial_id] = trial
            for (fidelity, values), rung in zip(stored.results, reached, strict=True):
                clean = _clean(values, names, stored.trial_id)
                if clean is not None and rung >= bracket and fidelity == self.levels[rung]:
                    trial.reported[fidelity] = clean
                    arrivals.append((len(arrivals), stored.trial_id, rung, clean))
            # Promoted from every rung below the one it trains towards (or reached).
            for rung in range(bracket, current_rung(target, self.levels)):
                if rung < top or stored.state is TrialState.RUNNING:
                    self._promoted.setdefault((bracket, rung), set()).add(stored.trial_id)
            trial.status = {TrialState.PAUSED: _Status.PAUSED, TrialState.FINISHED: _Status.DONE,
                            TrialState.FAILED: _Status.FAILED, TrialState.RUNNING: _Status.RUNNING}[stored.state]
            if stored.state is TrialState.PAUSED and top >= len(self.levels) - 1:
                trial.status = _Status.DONE
            if trial.status is _Status.RUNNING:
                if target in trial.reported:  # it reported its target before the stop: nothing to redo
                    trial.status = _Status.DONE if target >= self.max_fidelity else _Status.PAUSED
                    continue
                start = top >= bracket
                resubmit.append(Suggestion(SuggestionKind.RESUME if start else SuggestionKind.START,
                                           stored.trial_id, dict(trial.config), target, bracket,
                                           current_rung(target, self.levels),
                                           self.levels[top] if start else None))
        for _, tid, rung, values in arrivals:
            self._rungs.setdefault((self._book.trials[tid].bracket, rung), {})[tid] = values
        return resubmit


class MultiObjectiveASHA(MultiObjectiveHyperband):
    """Asynchronous successive halving (promotion type) with multi-objective promotion: one bracket.

    Hyperband with every trial in bracket 0, so every new trial starts at the minimum fidelity.
    """

    def __init__(
        self,
        *,
        propose: Propose,
        objectives: Sequence[Objective],
        min_fidelity: int,
        max_fidelity: int,
        eta: float = 3,
        tie_break: TieBreak | str = TieBreak.CROWDING,
        ranking: Ranking | None = None,
        max_trials: int | None = None,
    ) -> None:
        super().__init__(
            propose=propose,
            objectives=objectives,
            min_fidelity=min_fidelity,
            max_fidelity=max_fidelity,
            eta=eta,
            tie_break=tie_break,
            ranking=ranking,
            max_trials=max_trials,
        )

    def _next_bracket(self) -> int:
        """Always bracket 0: ASHA is the most aggressive Hyperband bracket on its own."""
        return 0


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
        self._book = _TrialBook(propose, max_trials)

    def suggest(self) -> Suggestion | None:
        """A new trial at the maximum fidelity, or None once the budget or the source is exhausted."""
        config = self._book.new_config()
        if config is None:
            return None
        tid = len(self._book.trials)
        self._book.trials[tid] = _Trial(config=config, bracket=0, target=self.max_fidelity)
        return Suggestion(SuggestionKind.START, tid, dict(config), self.max_fidelity)

    def on_trial_result(self, trial_id: int, fidelity: int, objectives: Mapping[str, float]) -> Decision:
        """CONTINUE below the maximum, STOP at it (or on a NaN objective, which counts as a failure)."""
        trial = self._book.running(trial_id)
        if fidelity > self.max_fidelity:
            raise ValueError(f"trial {trial_id}: fidelity {fidelity} exceeds the maximum {self.max_fidelity}")
        values = _clean(objectives, [o.name for o in self.objectives], trial_id)
        if values is None:
            trial.status = _Status.FAILED
            return Decision.STOP
        trial.reported[fidelity] = values
        if fidelity < self.max_fidelity:
            return Decision.CONTINUE
        trial.status = _Status.DONE
        return Decision.STOP

    def on_trial_error(self, trial_id: int) -> None:
        """Mark the trial failed (unknown ids raise KeyError)."""
        if trial_id not in self._book.trials:
            raise KeyError(f"unknown trial {trial_id}")
        self._book.trials[trial_id].status = _Status.FAILED

    def restore(self, trials: Sequence[RestoredTrial]) -> list[Suggestion]:
        """Statuses from stored trials; trials that were running start again from their checkpoint."""
        resubmit = []
        for stored in self._book.restorable(trials):
            trial = _Trial(config=dict(stored.config), bracket=0, target=self.max_fidelity)
            trial.reported = {f: dict(v) for f, v in stored.results}
            self._book.trials[stored.trial_id] = trial
            done = self.max_fidelity in trial.reported
            if stored.state is TrialState.FAILED:
                trial.status = _Status.FAILED
            elif done or stored.state is TrialState.FINISHED:
                trial.status = _Status.DONE
            else:  # running, or paused (a full-fidelity study never pauses, but a crash may leave one)
                trial.status = _Status.RUNNING
                reached = max(trial.reported, default=None)
                kind = SuggestionKind.START if reached is None else SuggestionKind.RESUME
                resubmit.append(Suggestion(kind, stored.trial_id, dict(trial.config), self.max_fidelity,
                                           resume_from=reached))
        return resubmit
