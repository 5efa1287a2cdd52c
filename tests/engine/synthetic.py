"""A synthetic two-objective trial for engine tests: milliseconds per job, picklable for worker processes."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Mapping
from typing import Any

from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.search.history import Config, History
from autopeft.search.samplers.base import Sampler
from autopeft.space.params import Param
from autopeft.status import TrialStatus

MAX_F = 27
DIMS = {"x": Param.model_validate({"float": [0.0, 1.0]}), "y": Param.model_validate({"float": [0.0, 1.0]})}


def objectives(config: Mapping[str, Any], fidelity: int) -> dict[str, float]:
    """Score grows with capacity x and peaks at y = 0.6; parameters grow with x: a real trade-off."""
    x, y = float(config["x"]), float(config["y"])
    quality = (1.0 - (y - 0.6) ** 2) * (0.3 + 0.7 * math.sqrt(x))
    curve = 1.0 - 0.5 * math.exp(-4.0 * fidelity / MAX_F)
    return {"score": quality * curve, "trainable_params": 1e6 * (0.05 + x)}


def synthetic_runner(task: TrialTask) -> TrialOutcome:
    """Fails for y > 0.9 (as a trial that runs out of memory would); otherwise reports both objectives."""
    if float(task.config["y"]) > 0.9:
        return TrialOutcome(task.number, TrialStatus.FAILED, task.fidelity, error="RuntimeError: synthetic failure",
                            worker=str(os.getpid()))
    return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity, objectives(task.config, task.fidelity),
                        {"trainable_share": 0.01, "pid": os.getpid()}, worker=str(os.getpid()))


class UniformSampler(Sampler):
    """Uniform draws seeded by the number of trials so far: enough to drive the loop in tests."""

    def propose(self, n: int, history: History) -> list[Config]:
        rng = random.Random(self.seed * 100_003 + history.num_trials)
        return [{name: rng.uniform(*p.float_range) for name, p in self.dims.items()  # type: ignore[misc]
                 if p.float_range} for _ in range(n)]
