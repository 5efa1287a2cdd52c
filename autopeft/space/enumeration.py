"""Enumerating a search space's per-layer configurations, for exact bounds on what it can train.

`ParamCounter` (autopeft.train.counting) counts each local configuration once per layer structure;
this module only lists them (torch-free), and finds the largest total a parameter limit allows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import Any

from autopeft.space.params import Param, dependency_order
from autopeft.space.space import SearchSpace

#: Local (per-layer) configurations enumerated per layer structure before integer ranges shrink to a
#: grid (their ends and the powers of two between); beyond that the bounds are not exact.
MAX_LOCAL_CONFIGS = 200_000
#: Element operations the constrained-maximum search (a reachable-sums bitset) may spend.
MAX_KNAPSACK_WORK = 400_000_000


def _domain(param: Param, grid: bool) -> list[Any]:
    if param.choices is not None:
        return list(param.choices)
    if param.int_range is not None:
        low, high = param.int_range
        if not grid:
            return list(range(low, high + 1))
        powers = [2**k for k in range(64) if low < 2**k < high]
        return sorted({low, high, *powers})
    low_f, high_f = param.float_range  # type: ignore[misc]
    return sorted({low_f, high_f})


def _needed(params: Mapping[str, Param], refs: tuple[str, ...]) -> set[str]:
    """Parameters whose value can change a count: read by the plan, or a condition's parent."""
    return set(refs) | {c.param for p in params.values() for c in p.when}


def _enumerate(params: Mapping[str, Param], needed: set[str], grid: bool) -> Iterator[dict[str, Any]]:
    """Every assignment of `params` (parents first, as `sample` draws), inactive ones absent."""
    names = dependency_order(params)

    def walk(i: int, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(names):
            yield dict(config)
            return
        name, param = names[i], params[names[i]]
        if not param.active(config):
            yield from walk(i + 1, config)
            return
        domain = _domain(param, grid) if name in needed else _domain(param, grid)[:1]
        for value in domain:
            config[name] = value
            yield from walk(i + 1, config)
        config.pop(name, None)

    return walk(0, {})


def local_configs(space: SearchSpace, refs: tuple[str, ...]) -> tuple[list[dict[str, Any]], bool]:
    """All local configurations (exact), or those of the grid when there are too many."""
    needed = _needed(space.layers, refs)
    configs = list(itertools.islice(_enumerate(space.layers, needed, grid=False), MAX_LOCAL_CONFIGS + 1))
    if len(configs) <= MAX_LOCAL_CONFIGS:
        return configs, True
    return list(_enumerate(space.layers, needed, grid=True)), False


def training_configs(space: SearchSpace, refs: tuple[str, ...]) -> list[dict[str, Any]]:
    """Assignments of the global (training and shared) parameters the plan reads (one empty assignment when none)."""
    params = space.global_params
    read = {name: p for name, p in params.items() if name in _needed(params, refs)}
    return [{k: v for k, v in c.items() if k in refs} for c in _enumerate(read, set(read), grid=True)]


def training_defaults(space: SearchSpace, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """A valid value of every global parameter (the first choice or the low end), `fixed` kept."""
    config: dict[str, Any] = {}
    params = space.global_params
    for name in dependency_order(params):
        param = params[name]
        if param.active(config):
            config[name] = fixed[name] if name in fixed else _domain(param, grid=True)[0]
    return config


def knapsack_max(options: list[tuple[int, list[list[int]]]], limit: int) -> int | None:
    """The largest `head + one count per layer` <= `limit`, over every training setting; None if too costly."""
    import numpy as np

    best: int | None = None
    for head, layers in options:
        base = head + sum(o[0] for o in layers)
        budget = limit - base
        if budget < 0:
            continue
        deltas = [[c - o[0] for c in o if c - o[0] <= budget] for o in layers]
        g = math.gcd(*[d for ds in deltas for d in ds if d]) or 1
        budget //= g
        if sum(len(ds) for ds in deltas) * (budget + 1) > MAX_KNAPSACK_WORK:
            return None
        reach = np.zeros(budget + 1, dtype=bool)
        reach[0] = True
        for ds in deltas:
            new = np.zeros_like(reach)
            for d in ds:
                d //= g
                new[d:] |= reach[: budget + 1 - d]
            reach = new
        top = base + int(np.flatnonzero(reach)[-1]) * g
        best = top if best is None else max(best, top)
    return best
