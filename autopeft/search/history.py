"""What a sampler sees of a study: every result so far and the configurations still in flight.

Samplers are rebuilt from a `History` on every call (they keep no state of their own besides a
seed), which is what makes a study resumable from the store alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Config = dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """One trial's objective values at one fidelity (a rung); `trial` is its number in the study."""

    trial: int
    config: Mapping[str, Any]
    fidelity: int
    objectives: Mapping[str, float]


@dataclass(frozen=True)
class History:
    """Results in order of arrival, plus configurations running or waiting (no result at their target yet)."""

    observations: tuple[Observation, ...] = ()
    pending: tuple[Mapping[str, Any], ...] = ()
    #: Trials proposed so far (started, finished or failed); seeds and quasi-random sequences use it.
    num_trials: int = 0
    failed: tuple[Mapping[str, Any], ...] = field(default=())

    def fidelities(self) -> list[int]:
        """The fidelities that have results, highest first."""
        return sorted({o.fidelity for o in self.observations}, reverse=True)

    def at_fidelity(self, fidelity: int) -> list[Observation]:
        """Each trial's result at ``fidelity`` (the latest one if reported twice)."""
        latest: dict[int, Observation] = {}
        for obs in self.observations:
            if obs.fidelity == fidelity:
                latest[obs.trial] = obs
        return list(latest.values())

    def highest_fidelity(self, min_points: int = 1) -> tuple[int | None, list[Observation]]:
        """The highest fidelity with at least ``min_points`` results, and those results.

        BO fits its model there ("the highest fidelity reached so far"); a rung reached by a single
        trial says too little about the space, so a lower, fuller rung is used until it fills.
        """
        for fidelity in self.fidelities():
            points = self.at_fidelity(fidelity)
            if len(points) >= min_points:
                return fidelity, points
        return None, []


def history_from(observations: Sequence[Observation], pending: Sequence[Mapping[str, Any]] = (),
                 num_trials: int | None = None) -> History:
    """A `History`; ``num_trials`` defaults to the number of distinct trials seen."""
    trials = {o.trial for o in observations}
    count = len(trials) + len(pending) if num_trials is None else num_trials
    return History(tuple(observations), tuple(pending), count)
