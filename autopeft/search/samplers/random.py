"""`RandomSampler`: scrambled Sobol points over the unit cube of the space, decoded to configurations.

Quasi-random points cover a space more evenly than independent draws in the few tens of trials a
study runs. The sequence is fixed by the seed and advanced by ``history.num_trials``, so successive
calls continue it instead of repeating it. Infeasible and already-seen configurations are skipped
(a bounded number of tries), then plain uniform draws take over; if still nothing new and feasible
turns up, fewer configurations come back (the space is exhausted or the constraint too tight).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping

import numpy as np

from autopeft.search.history import Config, History
from autopeft.search.pareto import Objective
from autopeft.search.samplers.base import Feasible, KnownObjective, Sampler
from autopeft.search.samplers.common import derive_seed, seen_keys
from autopeft.space.encoding import SpaceEncoder, config_key
from autopeft.space.params import Param

logger = logging.getLogger(__name__)


class RandomSampler(Sampler):
    """Scrambled Sobol proposals, feasible and new; ``max_tries`` candidate points per requested config."""

    def __init__(self, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None,
                 max_tries: int = 64) -> None:
        super().__init__(dims, objectives, seed=seed, feasible=feasible, known=known)
        self.encoder = SpaceEncoder(self.dims)
        self.max_tries = max(1, int(max_tries))

    def propose(self, n: int, history: History) -> list[Config]:
        if n <= 0:
            return []
        seen = seen_keys(history)
        out: list[Config] = []
        budget = self.max_tries * n
        for source in (self._sobol_points(history.num_trials), self._uniform_points(history.num_trials)):
            for _, u in zip(range(budget), source, strict=False):
                config = self.encoder.decode_unit(u)
                key = config_key(config)
                if key in seen or not self.feasible(config):
                    continue
                seen.add(key)
                out.append(config)
                if len(out) == n:
                    return out
        logger.info("random: found %d of %d new feasible configurations in %d tries", len(out), n, 2 * budget)
        return out

    def _sobol_points(self, skip: int) -> Iterator[np.ndarray]:
        """The study's Sobol sequence from point ``skip`` on, in chunks."""
        from scipy.stats import qmc

        if self.encoder.dim == 0:
            yield np.zeros(0)
            return
        sobol = qmc.Sobol(self.encoder.dim, scramble=True, seed=derive_seed(self.seed))
        if skip > 0:  # scipy cannot fast-forward by 0
            sobol.fast_forward(skip)
        while True:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*balance properties.*")
                chunk = sobol.random(16)
            yield from chunk

    def _uniform_points(self, skip: int) -> Iterator[np.ndarray]:
        """Independent uniform points (the fallback when the Sobol points are used up or rejected)."""
        rng = np.random.default_rng(derive_seed(self.seed, skip, 1))
        while True:
            yield rng.random(self.encoder.dim)
