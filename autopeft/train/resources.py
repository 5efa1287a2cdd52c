"""Where a trial runs: how many CPU threads and which device, checked and resolved in one place.

`trial run`, `train` and `study run`/`resume` take `--threads` and `--device`, which override the recipe's
`training.threads` and `training.device`. Without either, a trial takes the cores this process may use
(its CPU affinity, not the machine's count: a job pinned to 4 of 64 cores must not start 64 threads),
split between the workers of a study, so that nothing oversubscribes the CPU.

A local pool on a machine with several GPUs spreads its trials over them (`DevicePlan`): `--devices 0,1,2,3`,
or by default every GPU torch sees where the trials would train on `cuda` anyway.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from autopeft.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from autopeft.train.recipe import TrialRecipe

#: What `--device` and `training.device` accept (cuda:N names one GPU).
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
#: What `--devices` accepts (`study run` and `resume` with the local pool).
DEVICE_LIST = "GPU indices or cuda:N names, comma-separated (0,1,2,3 or cuda:0,cuda:1)"
_GPU = re.compile(r"(?:cuda:)?(\d+)")


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


def cuda_count() -> int:
    """The CUDA GPUs torch sees here (0 without CUDA); `CUDA_VISIBLE_DEVICES` is honoured by torch itself."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_devices(text: str | None, option: str = "--devices") -> tuple[str, ...] | None:
    """`--devices 0,1` or `cuda:0,cuda:1` -> ``("cuda:0", "cuda:1")``, each a GPU torch sees; None: not given.

    Checked before anything is written, so a GPU that is not there is one line, not a failed trial per GPU.
    """
    if text is None:
        return None
    devices: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        match = _GPU.fullmatch(item)
        if match is None:
            raise ConfigError(f"{item!r} is not a GPU; accepted: {DEVICE_LIST}", field=option)
        name = f"cuda:{int(match.group(1))}"
        if name in devices:
            raise ConfigError(f"{name} is listed twice; accepted: {DEVICE_LIST}, each once", field=option)
        devices.append(name)
    count = cuda_count()
    unseen = [name for name in devices if int(name.partition(":")[2]) >= count]
    if unseen:
        seen = (f"{count} GPU(s): cuda:0-{count - 1}" if count
                else f"no CUDA GPU here (leave {option} out to train on the CPU)")
        raise ConfigError(f"{', '.join(unseen)} asked for, but torch sees {seen}", field=option)
    return tuple(devices)


def default_devices(device: str | None) -> tuple[str, ...] | None:
    """The GPUs a local pool spreads its trials over without `--devices`: every one torch sees, where it sees more
    than one and the trials would train on ``device`` `auto` or `cuda` (else None: the trials keep ``device``).

    Without this, every trial of a pool on a 4-GPU machine would take `cuda` (cuda:0) and three GPUs would idle.
    """
    if device not in ("auto", "cuda"):
        return None
    count = cuda_count()
    return tuple(f"cuda:{index}" for index in range(count)) if count > 1 else None


class DevicePlan:
    """Which device each trial of a local pool trains on: the least busy of ``devices`` among running trials.

    Why here and so: a pool's trials are separate processes that cannot see each other's GPU, so the one place
    that hands out devices must count them. Least busy (ties: the next one after the last handed out, round
    robin) puts ``workers == len(devices)`` trials on one device each and ``2 * len(devices)`` two per device,
    and a device comes back as soon as its trial ends by any road (reported, raised, timed out, cancelled, its
    worker lost): the executor calls `release` from the one callback every one of those passes through.
    Thread-safe: trials end on the pool's threads while the driver submits others.
    """

    def __init__(self, devices: Sequence[str]) -> None:
        if not devices:
            raise ValueError("a device plan needs at least one device")
        for name in devices:
            if not isinstance(name, str) or not re.fullmatch(r"cuda:\d+", name):
                raise ValueError(f"{name!r} is not a GPU; a device plan takes cuda:N names")
        if len(set(devices)) != len(devices):
            raise ValueError(f"a device is listed twice in {list(devices)}")
        self.devices = tuple(devices)
        self._busy = dict.fromkeys(self.devices, 0)
        self._next = 0  # where the round robin between equally busy devices starts
        self._lock = threading.Lock()

    def acquire(self) -> str:
        """The device for one more trial: the least busy, ties to the next in turn; counted until `release`."""
        with self._lock:
            order = self.devices[self._next:] + self.devices[:self._next]
            chosen = min(order, key=self._busy.__getitem__)  # min keeps the first of equals: the next in turn
            self._busy[chosen] += 1
            self._next = (self.devices.index(chosen) + 1) % len(self.devices)
            return chosen

    def release(self, device: str) -> None:
        """A trial on ``device`` ended (however it ended)."""
        with self._lock:
            if self._busy.get(device, 0) < 1:
                raise ValueError(f"{device} was released more often than acquired")
            self._busy[device] -= 1

    def busy(self) -> dict[str, int]:
        """Running trials per device, in the plan's order."""
        with self._lock:
            return dict(self._busy)


def gpu_tag(device: str) -> str:
    """What a worker name gets for the GPU it was given, as the Ray executor's: ``cuda:1`` -> ``:gpu1``."""
    return f":gpu{device.partition(':')[2]}"
