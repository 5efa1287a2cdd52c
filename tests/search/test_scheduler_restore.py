"""`Scheduler.restore`: a scheduler rebuilt from stored trials decides exactly as the one that was stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from autopeft.search import (
    Decision,
    FullFidelity,
    MultiObjectiveHyperband,
    RestoredTrial,
    Scheduler,
    Suggestion,
    SuggestionKind,
)
from autopeft.search.pareto import Direction, Objective
from autopeft.status import TrialStatus
from tests.search.test_scheduler import MAX_F, TWO, synthetic

CONFIGS = [{"x": float(x), "y": float(y)} for x, y in np.random.default_rng(3).random((200, 2))]


def from_list(start: int) -> Callable[[int], list[dict[str, Any]]]:
    cursor = [start]

    def propose(n: int) -> list[dict[str, Any]]:
        out = CONFIGS[cursor[0]:cursor[0] + n]
        cursor[0] += n
        return [dict(c) for c in out]

    return propose


class Recorder:
    """Plays the engine one job at a time and keeps what the store would hold."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.results: dict[int, list[tuple[int, dict[str, float]]]] = {}
        self.state: dict[int, TrialStatus] = {}
        self.configs: dict[int, dict[str, Any]] = {}
        self.brackets: dict[int, int] = {}

    def step(self, *, fail: bool = False) -> Suggestion | None:
        s = self.scheduler.suggest()
        if s is None:
            return None
        self.configs[s.trial_id] = dict(s.config)
        self.brackets.setdefault(s.trial_id, s.bracket)
        if fail:
            self.scheduler.on_trial_error(s.trial_id)
            self.state[s.trial_id] = TrialStatus.FAILED
            return s
        values = synthetic(s.config, s.fidelity)
        self.results.setdefault(s.trial_id, []).append((s.fidelity, values))
        decision = self.scheduler.on_trial_result(s.trial_id, s.fidelity, values)
        self.state[s.trial_id] = TrialStatus.PAUSED if decision is Decision.PAUSE else TrialStatus.COMPLETE
        return s

    def start_only(self) -> Suggestion:
        """A suggestion that is still running when the study stops."""
        s = self.scheduler.suggest()
        assert s is not None
        self.configs[s.trial_id] = dict(s.config)
        self.brackets.setdefault(s.trial_id, s.bracket)
        self.state[s.trial_id] = TrialStatus.RUNNING
        return s

    def stored(self, *, with_brackets: bool = True) -> list[RestoredTrial]:
        return [RestoredTrial(t, self.configs[t], self.state[t], self.brackets[t] if with_brackets else None,
                              tuple(self.results.get(t, ()))) for t in sorted(self.configs)]


def _hyperband(start: int) -> MultiObjectiveHyperband:
    return MultiObjectiveHyperband(propose=from_list(start), objectives=TWO, min_fidelity=1, max_fidelity=MAX_F,
                                   eta=3, bracket_assignment="round_robin")


@pytest.mark.parametrize("with_brackets", [True, False])
def test_restored_hyperband_continues_like_the_original(with_brackets: bool) -> None:
    original = Recorder(_hyperband(0))
    for i in range(40):
        original.step(fail=i == 7)
    in_flight = original.start_only()

    restored = _hyperband(len(original.configs))
    resubmit = restored.restore(original.stored(with_brackets=with_brackets))
    if not with_brackets:  # only trials that reported have a bracket to infer; this one had not
        assert in_flight.kind is SuggestionKind.RESUME
    assert [(s.trial_id, s.kind, s.fidelity, s.resume_from) for s in resubmit] == [
        (in_flight.trial_id, in_flight.kind, in_flight.fidelity, in_flight.resume_from)]
    assert restored._rungs == original.scheduler._rungs  # type: ignore[attr-defined]
    assert restored._promoted == {k: v for k, v in original.scheduler._promoted.items() if v}  # type: ignore[attr-defined]

    # Finish the in-flight job on both, then both must decide the same from here on.
    values = synthetic(in_flight.config, in_flight.fidelity)
    assert original.scheduler.on_trial_result(in_flight.trial_id, in_flight.fidelity, values) == \
        restored.on_trial_result(in_flight.trial_id, in_flight.fidelity, values)
    twin = Recorder(restored)
    for _ in range(30):
        a, b = original.step(), twin.step()
        assert (a.trial_id, a.kind, a.fidelity, a.config) == (b.trial_id, b.kind, b.fidelity, b.config)  # type: ignore[union-attr]


def test_restore_needs_a_fresh_scheduler_and_contiguous_ids() -> None:
    original = Recorder(_hyperband(0))
    for _ in range(5):
        original.step()
    with pytest.raises(RuntimeError):
        original.scheduler.restore(original.stored())
    stored = original.stored()[1:]
    with pytest.raises(ValueError, match="trial 0 is missing"):
        _hyperband(5).restore(stored)


def test_full_fidelity_restore_reruns_only_unfinished_trials() -> None:
    original = Recorder(FullFidelity(propose=from_list(0), objectives=TWO, max_fidelity=MAX_F))
    for i in range(4):
        original.step(fail=i == 2)
    running = original.start_only()
    restored = FullFidelity(propose=from_list(5), objectives=TWO, max_fidelity=MAX_F)
    resubmit = restored.restore(original.stored())
    assert [(s.trial_id, s.kind, s.fidelity) for s in resubmit] == [(running.trial_id, SuggestionKind.START, MAX_F)]
    nxt = restored.suggest()
    assert nxt is not None and nxt.trial_id == 5 and nxt.config == CONFIGS[5]


def test_a_restored_hyperband_keeps_a_rung_at_chance_closed_and_draws_as_the_original() -> None:
    """Scores at fidelity 1 never beat the reference 0.6 here, so rung 0 closes after four results; drawn
    brackets (not round robin) after a restore are the original's, with bracket 0 still closed."""
    objectives = [Objective("score", Direction.MAXIMIZE, reference=0.6), TWO[1]]

    def make(start: int) -> MultiObjectiveHyperband:
        return MultiObjectiveHyperband(propose=from_list(start), objectives=objectives, min_fidelity=1,
                                       max_fidelity=MAX_F, eta=3, seed=4)

    original = Recorder(make(0))
    for _ in range(40):
        original.step()
    assert original.scheduler.first_open_bracket() == 1  # type: ignore[attr-defined]
    restored = make(len(original.configs))
    assert restored.restore(original.stored()) == []
    assert restored.first_open_bracket() == 1
    twin = Recorder(restored)
    for _ in range(30):
        a, b = original.step(), twin.step()
        assert a is not None and b is not None
        assert (a.trial_id, a.kind, a.bracket, a.fidelity) == (b.trial_id, b.kind, b.bracket, b.fidelity)
        assert a.kind is SuggestionKind.RESUME or a.bracket >= 1
