"""Where a trial runs: how many CPU threads and which device, checked and resolved in one place.

`trial run`, `train` and `study run`/`resume` take `--threads` and `--device`, which override the recipe's
`training.threads` and `training.device`. Without either, a trial takes the cores this process may use
(its CPU affinity, not the machine's count: a job pinned to 4 of 64 cores must not start 64 threads),
split between the workers of a study, so that nothing oversubscribes the CPU.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from autopeft.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from autopeft.train.recipe import TrialRecipe

#: What `--device` and `training.device` accept (cuda:N names one GPU).
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def available_cores() -> int:
    """The cores this process may use (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers: int = 1) -> int:
    """Threads per trial when none is asked for: the allowed cores split evenly between workers (at least 1)."""
    return max(1, available_cores() // max(1, workers))


def device_error(name: object) -> str | None:
    """Why ``name`` is not a device name, or None: the rule `TrainingSpec` and `check_device` share."""
    if isinstance(name, str) and _DEVICE.fullmatch(name):
        return None
    return f"{name!r} is not a device; accepted: {', '.join(DEVICES)}"


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """A thread count from the command line: None (the default) or a whole number >= 1."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"must be a whole number >= 1 (CPU threads per trial), got {threads!r}", field=option)
    return threads


def check_device(device: str | None, option: str = "--device") -> str | None:
    """A device from the command line: a known name, and a GPU only where torch sees one."""
    if device is None:
        return None
    error = device_error(device)
    if error is not None:
        raise ConfigError(error, field=option)
    if device.startswith("cuda"):
        resolve_device(device, field=option)
    return device


def resolve_device(name: str, *, field: str = "training.device") -> torch.device:
    """`auto` -> cuda if torch sees a GPU, else cpu; a GPU that is not there is one line, not a CUDA trace."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{name} asked for, but torch sees no CUDA GPU here; accepted: auto, cpu", field=field)
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{name} asked for, but torch sees {count} GPU(s): cuda:0-{count - 1}", field=field)
    return device


def with_resources(recipe: TrialRecipe, *, threads: int | None = None, device: str | None = None,
                   default: int | None = None) -> TrialRecipe:
    """``recipe`` with the command line's threads and device; threads fall back to the recipe, then ``default``."""
    training = recipe.training
    update: dict[str, object] = {}
    chosen = threads or training.threads or default
    if chosen != training.threads:
        update["threads"] = chosen
    if device is not None:
        update["device"] = device
    if not update:
        return recipe
    return recipe.model_copy(update={"training": training.model_copy(update=update)})  # keeps `_source_dir`
