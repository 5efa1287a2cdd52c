"""A small mixed, conditional space with a synthetic score and a known cost, for sampler tests.

Per layer: a method (none, lora, adapter); lora has a log-scaled int rank and a list-valued roles
choice, adapter an ordinal size. A log-scaled learning rate. The score rewards LoRA of rank ~8 on
many roles and a learning rate near 3e-3; the cost is the exact count of added parameters, known
before a trial runs; configurations over `MAX_COST` are infeasible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from autopeft.search.history import History, Observation
from autopeft.search.pareto import Direction, Objective, hypervolume, reference_point, to_minimization
from autopeft.space import SearchSpace

NUM_LAYERS = 4
HIDDEN = 64
BASE_PARAMS = 200_000.0
MAX_COST = 24_000.0

SPACE = SearchSpace.model_validate({
    "name": "synthetic",
    "training": {"learning_rate": {"float": [1.0e-4, 1.0e-1], "log": True}},
    "layers": {
        "method": {"choices": ["none", "lora", "adapter"]},
        "rank": {"int": [1, 32], "log": True, "when": {"method": ["lora"]}},
        "roles": {"choices": [["query", "value"], ["query", "key", "value", "attn_output"]],
                  "when": {"method": ["lora"]}},
        "size": {"choices": [4, 16, 64], "when": {"method": ["adapter"]}},
    },
    "plan": [
        {"method": "lora", "r": "$rank", "roles": "$roles", "when": {"method": ["lora"]}},
        {"method": "parallel_adapter", "size": "$size", "when": {"method": ["adapter"]}},
    ],
})
DIMS = SPACE.dimensions(NUM_LAYERS)
OBJECTIVES = (
    Objective("score", Direction.MAXIMIZE, 0.0),
    Objective("trainable_params", Direction.MINIMIZE, BASE_PARAMS),
)


def cost(config: Mapping[str, Any]) -> float:
    """Exact added parameters: LoRA 2*hidden*rank per role, adapters 2*hidden*size."""
    total = 0.0
    for i in range(NUM_LAYERS):
        method = config[f"layer_{i}.method"]
        if method == "lora":
            total += 2 * HIDDEN * config[f"layer_{i}.rank"] * len(config[f"layer_{i}.roles"])
        elif method == "adapter":
            total += 2 * HIDDEN * config[f"layer_{i}.size"]
    return total


def feasible(config: Mapping[str, Any]) -> bool:
    return cost(config) <= MAX_COST


def score(config: Mapping[str, Any]) -> float:
    """In (0, 1): LoRA of rank ~8 with many roles is best, adapters help a little, lr near 3e-3."""
    lr_term = math.exp(-((math.log10(config["learning_rate"]) - math.log10(3e-3)) ** 2))
    layer_terms = []
    for i in range(NUM_LAYERS):
        method = config[f"layer_{i}.method"]
        if method == "lora":
            rank_term = math.exp(-0.5 * (math.log2(config[f"layer_{i}.rank"]) - 3) ** 2)
            layer_terms.append((0.6 + 0.4 * rank_term) * (1.0 if len(config[f"layer_{i}.roles"]) > 2 else 0.8))
        elif method == "adapter":
            layer_terms.append(0.3 + 0.1 * math.log2(config[f"layer_{i}.size"]) / 6)
        else:
            layer_terms.append(0.0)
    return 0.1 + 0.9 * lr_term * float(np.mean(layer_terms))


def evaluate(config: Mapping[str, Any]) -> dict[str, float]:
    return {"score": score(config), "trainable_params": cost(config)}


def history_of(configs: Sequence[Mapping[str, Any]], pending: Sequence[Mapping[str, Any]] = (),
               evaluate_fn: Callable[[Mapping[str, Any]], dict[str, float]] = evaluate) -> History:
    """Every config observed at fidelity 1 (trial numbers in order), plus pending ones."""
    observations = tuple(Observation(i, dict(c), 1, evaluate_fn(c)) for i, c in enumerate(configs))
    return History(observations, tuple(pending), len(configs) + len(pending))


def front_hypervolume(configs: Sequence[Mapping[str, Any]]) -> float:
    """Hypervolume of the evaluated configs, from the objectives' reference point."""
    if not configs:
        return 0.0
    values = [[evaluate(c)[o.name] for o in OBJECTIVES] for c in configs]
    points = to_minimization(values, [o.direction for o in OBJECTIVES])
    return hypervolume(points, reference_point(OBJECTIVES))
