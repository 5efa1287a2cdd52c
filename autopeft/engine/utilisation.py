"""How busy a study kept its workers, read back from the store's attempt times (`study show`, benchmarks).

The share that matters is the time workers sat idle *while the study still had work to hand out*: that
is time lost to the driver (proposing, recording, deciding), not to the budget running out. So, per
driver run (attempts carry the driver that started them), the window runs from its first attempt's
start to its last attempt's start; the workers are the most attempts that ran at once in that run; the
idle share is the worker-seconds of the window in which no attempt ran, over workers x window.
The tail after the last start (the last trials finishing, nothing left to start) is not idle time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from autopeft.store import AttemptRecord


@dataclass(frozen=True)
class Utilisation:
    """Worker time of a study's driver runs: ``idle_share`` of ``worker_seconds`` (None: too little to say)."""

    workers: int  # the most attempts that ran at once (the largest of the runs)
    window_seconds: float  # first start to last start, summed over the runs
    worker_seconds: float  # workers x window, summed over the runs
    idle_seconds: float

    @property
    def idle_share(self) -> float | None:
        return self.idle_seconds / self.worker_seconds if self.worker_seconds > 0 else None


def utilisation(attempts: Iterable[AttemptRecord], now: datetime | None = None) -> Utilisation:
    """Idle worker time while work remained, from attempts (their ``started_at``/``ended_at``, UTC).

    An attempt still open ends at ``now`` (default: its run's last start, so it counts as busy).
    """
    runs: dict[str | None, list[AttemptRecord]] = {}
    for attempt in attempts:
        runs.setdefault(attempt.driver, []).append(attempt)
    workers = 0
    window = capacity = idle = 0.0
    for run in runs.values():
        w, span, busy = _run_busy(run, now)
        workers = max(workers, w)
        window += span
        capacity += w * span
        idle += w * span - busy
    return Utilisation(workers, window, capacity, max(0.0, idle))


def _run_busy(run: list[AttemptRecord], now: datetime | None) -> tuple[int, float, float]:
    """(most attempts at once, window seconds, busy worker-seconds inside the window) of one driver run."""
    first = min(a.started_at for a in run)
    last = max(a.started_at for a in run)
    events: list[tuple[float, int]] = []
    busy = 0.0
    for attempt in run:
        start = (attempt.started_at - first).total_seconds()
        end_at = attempt.ended_at or now or last
        end = max(start, (end_at - first).total_seconds())
        events += [(start, 1), (end, -1)]
        busy += max(0.0, min(end, (last - first).total_seconds()) - start)
    running = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at the same instant
        running += step
        most = max(most, running)
    return most, (last - first).total_seconds(), busy
