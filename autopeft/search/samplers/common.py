"""Helpers every sampler shares: seeds derived from the history, what has been seen, the current front."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from autopeft.search.history import History, Observation
from autopeft.search.pareto import Objective, pareto_front_mask, to_minimization
from autopeft.space.encoding import config_key

ConfigKey = tuple[tuple[str, Any], ...]


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from a sampler seed and the history's size, so successive calls differ reproducibly."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])


def seen_keys(history: History) -> set[ConfigKey]:
    """Keys of every configuration already tried, running, waiting or failed: none is proposed again."""
    configs: Iterable[Mapping[str, Any]] = [
        *(o.config for o in history.observations), *history.pending, *history.failed,
    ]
    return {config_key(c) for c in configs}


def with_pending(history: History, extra: Sequence[Mapping[str, Any]]) -> History:
    """The history with ``extra`` configurations added as pending (for top-ups after a partial batch)."""
    return History(history.observations, (*history.pending, *extra), history.num_trials + len(extra),
                   history.failed)


def latest_per_trial(history: History) -> list[Observation]:
    """Each trial's latest result at the highest fidelity it reached, in trial order."""
    best: dict[int, Observation] = {}
    for obs in history.observations:
        kept = best.get(obs.trial)
        if kept is None or obs.fidelity >= kept.fidelity:
            best[obs.trial] = obs
    return [best[t] for t in sorted(best)]


def objective_values(obs: Observation, objectives: Sequence[Objective]) -> list[float] | None:
    """The observation's values in objective order, or None if one is missing or not finite."""
    values = [obs.objectives.get(o.name) for o in objectives]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    return [float(v) for v in values]  # type: ignore[arg-type]


def front(observations: Sequence[Observation], objectives: Sequence[Objective]) -> list[Observation]:
    """The observations on the Pareto front of all objectives (those with every value finite)."""
    rows = [(o, v) for o in observations if (v := objective_values(o, objectives)) is not None]
    if not rows:
        return []
    points = to_minimization([v for _, v in rows], [o.direction for o in objectives])
    mask = pareto_front_mask(points)
    return [o for (o, _), keep in zip(rows, mask, strict=True) if keep]
