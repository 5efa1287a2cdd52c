"""What a training run tells a watcher as it goes: steps done, examples per second, loss, time left.

`TrialJob.run(progress=...)` calls a `TrainingProgress`; the command line draws it as a bar on a terminal
and as periodic plain lines in a log (`autopeft.cli.app.training_progress`). The numbers are computed here,
once, so the bar and the lines agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class TrainingProgress(Protocol):
    """Told when training starts, after every step, and when it ends."""

    def begin(self, total_steps: int, done_steps: int, batch_size: int) -> None: ...
    def step(self, step: int, loss: float | None) -> None: ...
    def end(self) -> None: ...


@dataclass(frozen=True)
class ProgressPoint:
    """One moment of a run."""

    step: int
    total: int
    examples_per_second: float | None  # None until a step has been timed
    loss: float | None  # the smoothed training loss
    seconds_left: float | None
    elapsed: float

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0

    def line(self) -> str:
        """`step 30/90 (33%) · 41.2 examples/s · loss 0.6512 · 1m12s left`, for logs."""
        parts = [f"step {self.step}/{self.total} ({100 * self.fraction:.0f}%)"]
        if self.examples_per_second is not None:
            parts.append(f"{self.examples_per_second:.1f} examples/s")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.seconds_left is not None and self.step < self.total:
            parts.append(f"{clock(self.seconds_left)} left")
        elif self.step >= self.total:
            parts.append(f"{clock(self.elapsed)} in all")
        return " · ".join(parts)


class Speedometer:
    """Turns (step, loss) into a `ProgressPoint`, timing only the steps trained in this run."""

    def __init__(self, total_steps: int, done_steps: int, batch_size: int, *,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.total, self.first, self.batch_size = total_steps, done_steps, batch_size
        self._now = now
        self.started = now()

    def point(self, step: int, loss: float | None) -> ProgressPoint:
        elapsed = self._now() - self.started
        trained = step - self.first
        rate = trained / elapsed if trained > 0 and elapsed > 0 else None
        left = (self.total - step) / rate if rate else None
        return ProgressPoint(step, self.total, None if rate is None else rate * self.batch_size, loss, left, elapsed)


def clock(seconds: float) -> str:
    """`45s`, `3m07s`, `1h02m`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
