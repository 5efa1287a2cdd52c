"""Strategies by name: which sampler proposes configurations and which scheduler decides fidelities.

| strategy         | proposals                        | fidelity                  |
| ---------------- | -------------------------------- | ------------------------- |
| `random`         | scrambled Sobol                  | every trial to max        |
| `tpe`, `nsga2`   | Optuna's samplers (ask/tell)     | every trial to max        |
| `mobo`           | BoTorch qLogNEHVI                | every trial to max        |
| `hyperband`      | scrambled Sobol                  | multi-objective Hyperband |
| `mobo-hyperband` | BoTorch qLogNEHVI (the default)  | multi-objective Hyperband |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.errors import ConfigError
from autopeft.search.full_fidelity import FullFidelity
from autopeft.search.hyperband import MultiObjectiveHyperband
from autopeft.search.pareto import Objective
from autopeft.search.samplers.base import Feasible, KnownObjective, Sampler
from autopeft.search.scheduler import Propose, Scheduler
from autopeft.space.params import Param

#: strategy -> (sampler name, multi-fidelity?)
STRATEGIES: dict[str, tuple[str, bool]] = {
    "mobo-hyperband": ("mobo", True),
    "mobo": ("mobo", False),
    "hyperband": ("random", True),
    "tpe": ("tpe", False),
    "nsga2": ("nsga2", False),
    "random": ("random", False),
}
DEFAULT_STRATEGY = "mobo-hyperband"


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; accepted: {', '.join(STRATEGIES)}", field="strategy")
    return name


@dataclass(frozen=True)
class StrategyOptions:
    """Knobs of the strategies; the defaults suit studies of tens of trials."""

    eta: float = 3.0
    tie_break: str = "crowding"
    sampler: Mapping[str, Any] | None = None


def make_sampler_for(strategy: str, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int,
                     feasible: Feasible | None, known: Mapping[str, KnownObjective] | None,
                     options: StrategyOptions = StrategyOptions(),
                     seeds: Sequence[Mapping[str, Any]] = ()) -> Sampler:
    """The strategy's sampler; with ``seeds``, it proposes those configurations first (`SeededSampler`)."""
    from autopeft.search.samplers import SeededSampler, make_sampler

    sampler_name, _ = STRATEGIES[check_strategy(strategy)]
    sampler = make_sampler(sampler_name, dims, objectives, seed=seed, feasible=feasible, known=known,
                           **dict(options.sampler or {}))
    return SeededSampler(sampler, seeds) if seeds else sampler


def make_scheduler(strategy: str, propose: Propose, objectives: tuple[Objective, ...], *, min_fidelity: int,
                   max_fidelity: int, seed: int, options: StrategyOptions = StrategyOptions(),
                   seeds: Sequence[Mapping[str, Any]] = ()) -> Scheduler:
    """The strategy's scheduler; under Hyperband the ``seeds`` (proposed first) train straight to full fidelity."""
    _, multi_fidelity = STRATEGIES[check_strategy(strategy)]
    if multi_fidelity and min_fidelity < max_fidelity:
        return MultiObjectiveHyperband(propose=propose, objectives=objectives, min_fidelity=min_fidelity,
                                       max_fidelity=max_fidelity, eta=options.eta, tie_break=options.tie_break,
                                       seed=seed, full_fidelity_configs=seeds)
    return FullFidelity(propose=propose, objectives=objectives, max_fidelity=max_fidelity)

