"""Cost measures of a trial: peak memory and the optimiser's learning-rate schedule."""

from __future__ import annotations

import math
import resource
import sys
from collections.abc import Callable

import torch


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocated on CUDA, resident set (RSS) on CPU.

    On CPU the figure is the process high-water mark, so a trial measured in its own worker process
    (as the executors run them) reports its own peak.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at a step: linear warmup, then linear/cosine decay or constant.

    The horizon is the recipe's *full* fidelity, not the fidelity of the current request, so that a
    trial continued from rung to rung follows the same schedule as one trained straight through.
    """

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor
