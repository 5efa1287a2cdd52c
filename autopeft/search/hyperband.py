"""Multi-objective Hyperband and ASHA (asynchronous, promotion type), with Pareto promotion at every rung."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from autopeft.errors import ConfigError
from autopeft.search.pareto import Objective, TieBreak
from autopeft.search.rungs import (
    bracket_distribution,
    current_rung,
    promotion_quota,
    rung_levels,
    validate_fidelities,
)
from autopeft.search.scheduler import (
    Decision,
    ParetoRanking,
    Propose,
    Ranking,
    RestoredTrial,
    Scheduler,
    Suggestion,
    SuggestionKind,
    TrialBook,
    TrialEntry,
    clean_objectives,
)
from autopeft.space.encoding import config_key
from autopeft.status import TrialStatus

_log = logging.getLogger(__name__)

#: A stored trial's status as the scheduler keeps it: complete and failed never run again; in flight runs again.
#: Pruned is paused: this scheduler never prunes, so a pruned trial is one that was paused at a rung when an
#: earlier run's budget ran out (the loop marks those pruned), and a larger budget may still promote it.
_RESTORED_STATUS = {TrialStatus.PAUSED: TrialStatus.PAUSED, TrialStatus.COMPLETE: TrialStatus.COMPLETE,
                    TrialStatus.PRUNED: TrialStatus.PAUSED, TrialStatus.FAILED: TrialStatus.FAILED,
                    TrialStatus.WAITING: TrialStatus.RUNNING, TrialStatus.RUNNING: TrialStatus.RUNNING}


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

    A rung that cannot tell configurations apart is skipped by new trials: once it holds
    ``uninformative_after`` results (over all brackets) and none of them beats the reference point in
    every objective (a score at chance adds no hypervolume), new trials are drawn only from the brackets
    that start above it, with the same relative weights. Too little training for any configuration to
    learn (a new task at 512 examples) is then spent once, not in every bracket that starts there. Trials
    already in those brackets follow the promotion rule as before, and a later result above chance at the
    rung brings its brackets back. ``None`` turns this off.

    ``full_fidelity_configs`` (the study's seeds: the space's defaults, a warm start's front) start in the top
    bracket whenever they are proposed: they are there to be compared with what the search finds, which
    needs their full-fidelity score, and a default left paused at a low rung would never get one.
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
        uninformative_after: int | None = 4,
        full_fidelity_configs: Sequence[Mapping[str, object]] = (),
    ) -> None:
        validate_fidelities(min_fidelity, max_fidelity, eta)
        if uninformative_after is not None and uninformative_after < 1:
            raise ConfigError(f"must be at least 1 or None, got {uninformative_after}", field="uninformative_after")
        if bracket_assignment not in ("hyperband", "round_robin"):
            raise ConfigError(
                f"must be 'hyperband' or 'round_robin', got {bracket_assignment!r}", field="bracket_assignment"
            )
        self.objectives = tuple(objectives)
        self.ranking: Ranking = ranking if ranking is not None else ParetoRanking(objectives, tie_break=tie_break)
        self.eta = eta
        self.levels = rung_levels(min_fidelity, max_fidelity, eta)
        self.bracket_assignment = bracket_assignment
        self.uninformative_after = uninformative_after
        self._chance_check = ParetoRanking(objectives)  # which results beat the reference (`is_uninformative`)
        self._first_open = 0  # the lowest open bracket at the last draw, to log when it moves
        self._straight_to_full = {config_key(c) for c in full_fidelity_configs}
        self._book = TrialBook(propose, max_trials)
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
        """The bracket of the next new trial, among those that start above every uninformative rung."""
        if self.num_brackets == 1:
            return 0
        first = self.first_open_bracket()
        if first != self._first_open:
            _log.info("new trials start at rung %d (%d) and above: %s", first, self.levels[first],
                      f"rung {first - 1} holds no result better than chance" if first else "a rung beats chance again")
            self._first_open = first
        if self.bracket_assignment == "round_robin":
            return first + len(self._book.trials) % (self.num_brackets - first)
        probs = np.array(self._probs)
        probs[:first] = 0.0
        # One draw per new trial whichever brackets are open, so a restore replays the same random stream.
        return int(self._rng.choice(self.num_brackets, p=probs / probs.sum()))

    def first_open_bracket(self) -> int:
        """The lowest bracket new trials may start in: above the highest rung below the top that is uninformative."""
        first = 0
        for rung in range(self.num_brackets - 1):
            if self.is_uninformative(rung):
                first = rung + 1
        return first

    def is_uninformative(self, rung: int) -> bool:
        """Whether ``rung`` holds ``uninformative_after`` results or more and none beats the reference everywhere."""
        if self.uninformative_after is None:
            return False
        results = [r for (_, level), table in self._rungs.items() if level == rung for r in table.values()]
        if len(results) < self.uninformative_after:
            return False
        return not bool(np.any(self._chance_check.adds_hypervolume(results)))

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
                if tid in promoted or trial.status is not TrialStatus.PAUSED:
                    continue
                promoted.add(tid)
                trial.status = TrialStatus.RUNNING
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
        bracket = self._next_bracket()  # drawn for every new trial, so the random stream is the same either way
        if config_key(config) in self._straight_to_full:
            bracket = self.num_brackets - 1
        tid = len(self._book.trials)
        self._book.trials[tid] = TrialEntry(config=config, bracket=bracket, target=self.levels[bracket])
        return Suggestion(SuggestionKind.START, tid, dict(config), self.levels[bracket], bracket, bracket)

    def on_trial_result(self, trial_id: int, fidelity: int, objectives: Mapping[str, float]) -> Decision:
        """Record rung results; PAUSE at a rung below max, STOP at max, CONTINUE in between."""
        trial, values = self._book.accept(trial_id, fidelity, objectives, [o.name for o in self.objectives],
                                          self.max_fidelity)
        if values is None:
            return Decision.STOP
        rung = current_rung(fidelity, self.levels)
        if rung >= trial.bracket and fidelity == self.levels[rung] and fidelity not in trial.reported:
            trial.reported[fidelity] = values
            self._rungs.setdefault((trial.bracket, rung), {})[trial_id] = values
        if fidelity < trial.target:
            return Decision.CONTINUE
        if fidelity >= self.max_fidelity:
            trial.status = TrialStatus.COMPLETE
            return Decision.STOP
        trial.status = TrialStatus.PAUSED
        return Decision.PAUSE

    def on_trial_error(self, trial_id: int) -> None:
        """Mark the trial failed so it is never promoted (unknown ids raise KeyError)."""
        self._book.mark_failed(trial_id)

    def restore(self, trials: Sequence[RestoredTrial]) -> list[Suggestion]:
        """Rungs, promotions and statuses from stored trials, and the bracket draws where they stopped.

        A trial's bracket is the stored one, or the rung of its first result; a trial with neither
        (it had not reported yet) gets the bracket drawn for it again. Rung populations are filled in
        the order the results arrived, so the promotion quota and ranking see what they saw before the
        stop. Paused and pruned trials are candidates of their rung again, so a study resumed with a
        larger budget continues its brackets (promoting what the rule allows) instead of starting over
        beside them (Iterative Deepening Hyperband, Brandt et al. 2023). One bracket draw is replayed
        per stored trial, so the trials started after a resume get the brackets they would have got
        without the stop.
        """
        arrivals: list[tuple[int, int, int, dict[str, float]]] = []  # (order, trial, rung, values)
        resubmit: list[Suggestion] = []
        names = [o.name for o in self.objectives]
        for stored in self._book.restorable(trials):
            drawn = self._next_bracket()  # the draw the stopped scheduler made for this trial
            reached = [current_rung(f, self.levels) for f, _ in stored.results]
            bracket = stored.bracket if stored.bracket is not None else min(reached, default=drawn)
            top = max(reached, default=-1)
            target = self.levels[bracket] if top < bracket else self.levels[min(top + 1, len(self.levels) - 1)]
            trial = TrialEntry(config=dict(stored.config), bracket=bracket, target=target)
            self._book.trials[stored.trial_id] = trial
            for (fidelity, values), rung in zip(stored.results, reached, strict=True):
                clean = clean_objectives(values, names, stored.trial_id)
                if clean is not None and rung >= bracket and fidelity == self.levels[rung]:
                    trial.reported[fidelity] = clean
                    arrivals.append((len(arrivals), stored.trial_id, rung, clean))
            # Promoted from every rung below the one it trains towards (or reached).
            for rung in range(bracket, current_rung(target, self.levels)):
                if rung < top or stored.status.is_active:
                    self._promoted.setdefault((bracket, rung), set()).add(stored.trial_id)
            trial.status = _RESTORED_STATUS[stored.status]
            if trial.status is TrialStatus.PAUSED and top >= len(self.levels) - 1:
                trial.status = TrialStatus.COMPLETE
            if trial.status is TrialStatus.RUNNING:
                if target in trial.reported:  # it reported its target before the stop: nothing to redo
                    trial.status = TrialStatus.COMPLETE if target >= self.max_fidelity else TrialStatus.PAUSED
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
