"""Samplers: random (Sobol), TPE and NSGA-II (Optuna ask-and-tell), MOBO (BoTorch qLogNEHVI).

Importing this package imports no torch, BoTorch or Optuna; each sampler imports them when it proposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopeft.errors import ConfigError
from autopeft.search.pareto import Objective
from autopeft.search.samplers.base import Feasible, KnownObjective, Sampler
from autopeft.search.samplers.botorch_sampler import MOBOSampler
from autopeft.search.samplers.optuna_sampler import NSGA2Sampler, OptunaSampler, TPESampler
from autopeft.search.samplers.random import RandomSampler
from autopeft.search.samplers.seeded import SeededSampler
from autopeft.space.params import Param

#: Strategy names accepted by `make_sampler` (and a study's ``strategy``).
SAMPLERS: dict[str, type[Sampler]] = {
    "random": RandomSampler,
    "tpe": TPESampler,
    "nsga2": NSGA2Sampler,
    "mobo": MOBOSampler,
}


def make_sampler(name: str, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None,
                 **options: Any) -> Sampler:
    """The sampler called ``name``; ``options`` go to its constructor (e.g. ``population_size`` for nsga2)."""
    cls = SAMPLERS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown sampler {name!r}; accepted: {', '.join(SAMPLERS)}", field="strategy")
    try:
        return cls(dims, tuple(objectives), seed=seed, feasible=feasible, known=known, **options)
    except TypeError as err:
        raise ConfigError(f"bad option for sampler {name!r}: {err}", field="strategy") from None


__all__ = [
    "SAMPLERS",
    "Feasible",
    "KnownObjective",
    "MOBOSampler",
    "NSGA2Sampler",
    "OptunaSampler",
    "RandomSampler",
    "Sampler",
    "SeededSampler",
    "TPESampler",
    "make_sampler",
]
