"""Candidate pools for acquisition over a discrete set: random draws plus mutations of the front.

Optimising an acquisition function over a pool of valid configurations avoids relaxing
categoricals and conditions to a continuous box (whose optimum would then have to be rounded into
something the model never scored). Random draws explore; mutations of the current Pareto front's
configurations (a few columns moved in the unit cube: numeric ones a small Gaussian step,
categorical ones a fresh draw, children of a newly activated parent drawn at random) exploit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autopeft.search.history import Config
from autopeft.search.samplers.base import Feasible
from autopeft.search.samplers.common import ConfigKey
from autopeft.space.encoding import SpaceEncoder, config_key

#: Standard deviation of a numeric column's mutation step, in unit-cube coordinates.
STEP = 0.15


def mutate(encoder: SpaceEncoder, config: Mapping[str, Any], rng: np.random.Generator,
           max_changes: int = 3) -> Config:
    """A neighbour of ``config``: one to ``max_changes`` of its active columns moved."""
    u = encoder.to_unit(config, fill=rng.random(encoder.dim))
    active = [j for j, col in enumerate(encoder.columns) if col.name in config]
    if not active:
        return encoder.decode_unit(rng.random(encoder.dim))
    count = int(rng.integers(1, min(max_changes, len(active)) + 1))
    for j in rng.choice(active, size=count, replace=False):
        if encoder.columns[j].kind == "categorical":
            u[j] = rng.random()
        else:
            u[j] = float(np.clip(u[j] + rng.normal(0.0, STEP), 0.0, np.nextafter(1.0, 0.0)))
    return encoder.decode_unit(u)


def candidate_pool(encoder: SpaceEncoder, parents: Sequence[Mapping[str, Any]], rng: np.random.Generator, *,
                   num_random: int, num_mutations: int, feasible: Feasible,
                   exclude: set[ConfigKey]) -> list[Config]:
    """Distinct, feasible configurations not in ``exclude``: mutations of ``parents`` first, then random."""
    drafts: list[Config] = []
    if parents:
        drafts += [mutate(encoder, parents[i % len(parents)], rng) for i in range(num_mutations)]
    drafts += [encoder.decode_unit(u) for u in rng.random((num_random, encoder.dim))]
    seen = set(exclude)
    pool: list[Config] = []
    for config in drafts:
        key = config_key(config)
        if key in seen:
            continue
        seen.add(key)
        if feasible(config):
            pool.append(config)
    return pool
