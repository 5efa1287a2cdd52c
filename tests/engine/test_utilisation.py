"""The workers' idle share, from attempt times: exact on hand-made timelines, and read from a real study."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopeft.engine.utilisation import utilisation
from autopeft.status import AttemptOutcome
from autopeft.store import AttemptRecord

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _attempt(n: int, start: float, end: float | None, driver: str = "d1") -> AttemptRecord:
    return AttemptRecord(id=n, trial_id=n, trial_number=n, number=1, fidelity=1, resume_from=None, driver=driver,
                         worker="w", outcome=AttemptOutcome.REPORTED, error=None,
                         started_at=T0 + timedelta(seconds=start),
                         ended_at=None if end is None else T0 + timedelta(seconds=end))


def test_two_workers_with_one_gap_each() -> None:
    # worker A: [0, 10] then [12, 20]; worker B: [0, 8] then [11, 20]; last start at 12 -> window [0, 12]
    use = utilisation([_attempt(1, 0, 10), _attempt(2, 0, 8), _attempt(3, 11, 20), _attempt(4, 12, 20)])
    assert use.workers == 2 and use.window_seconds == pytest.approx(12.0)
    # idle in the window: A from 10 to 12 (2 s), B from 8 to 11 (3 s) -> 5 of 24 worker-seconds
    assert use.idle_seconds == pytest.approx(5.0)
    assert use.idle_share == pytest.approx(5 / 24)


def test_the_tail_after_the_last_start_is_not_idle_time() -> None:
    use = utilisation([_attempt(1, 0, 10), _attempt(2, 0, 100), _attempt(3, 10, 12)])
    assert use.idle_share == pytest.approx(0.0)  # nothing was left to start after second 10


def test_driver_runs_are_counted_apart_and_the_downtime_between_them_is_not() -> None:
    first = [_attempt(1, 0, 5, "d1"), _attempt(2, 5, 10, "d1")]
    second = [_attempt(3, 1000, 1004, "d2"), _attempt(4, 1006, 1010, "d2")]
    use = utilisation(first + second)
    assert use.workers == 1 and use.window_seconds == pytest.approx(11.0)
    assert use.idle_seconds == pytest.approx(2.0)  # 1004 to 1006 only; the hours between runs are not idle


def test_open_attempts_count_as_busy_and_nothing_says_none() -> None:
    assert utilisation([_attempt(1, 0, None), _attempt(2, 3, None)]).idle_share == pytest.approx(0.0)
    assert utilisation([]).idle_share is None
    assert utilisation([_attempt(1, 0, 4)]).idle_share is None  # one start: no window


def test_a_real_study_reads_back_a_share_between_zero_and_one(tmp_path: Path) -> None:
    from autopeft.engine.executors import LocalPoolExecutor
    from autopeft.engine.lease import FaultPolicy
    from autopeft.store import Store
    from tests.engine.faulty import WithOptions, echo_runner
    from tests.engine.test_faults import _run

    store = Store(f"sqlite:///{tmp_path / 'u.db'}")
    _run(store, "u", WithOptions(echo_runner, {"sleep": 0.2}), LocalPoolExecutor(2), budget=6, policy=FaultPolicy())
    use = utilisation(store.attempts("u"))
    assert use.workers == 2 and use.idle_share is not None and 0.0 <= use.idle_share < 1.0
