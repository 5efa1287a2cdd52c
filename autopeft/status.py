r"""The one trial-status vocabulary that the store, the schedulers, the loop and the trial job share.

    waiting -> running -> paused -> running -> ... -> complete
                      \-> failed             \-> pruned (paused when the study's budget ran out)

A trial is `waiting` when it is created, and again when its job was interrupted (the driver stopped, or
its worker died) and it will run again from its checkpoint. `complete` and `failed` are final; so is
`pruned`, but for one way back: a study resumed with a larger budget continues its brackets, and a pruned
trial its rung promotes goes back to `paused` and on from its checkpoint.
It lives at the bottom of the package so that every layer can use it without importing another.
"""

from __future__ import annotations

import enum


class TrialStatus(str, enum.Enum):
    """Where a trial is in its lifecycle (the store's `trials.status` column holds these values)."""

    WAITING = "waiting"  # created, or interrupted: runs (again) from its last checkpoint
    RUNNING = "running"  # a job trains it now
    PAUSED = "paused"  # stopped at a rung; a scheduler may still promote it
    COMPLETE = "complete"  # reached the study's maximum fidelity
    PRUNED = "pruned"  # stopped at a rung when the budget ran out (a larger budget may promote it)
    FAILED = "failed"  # could not go on; its `error` says why

    @property
    def is_finished(self) -> bool:
        """Final: the trial never runs or changes status again."""
        return self in _FINISHED

    @property
    def is_active(self) -> bool:
        """Waiting or running: a job for it is in flight, or must be run again after a stop."""
        return self in (TrialStatus.WAITING, TrialStatus.RUNNING)


_FINISHED = frozenset({TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED})


class AttemptOutcome(str, enum.Enum):
    """How one job of a trial (an attempt) ended; a trial's attempts are its history in the store."""

    RUNNING = "running"  # not ended yet
    REPORTED = "reported"  # reached its fidelity and reported its result
    FAILED = "failed"  # the trial failed (its error says why)
    LOST = "lost"  # its worker died or went silent: the trial runs again, up to the retry limit
    TIMEOUT = "timeout"  # ran past --trial-timeout: the trial fails
    INTERRUPTED = "interrupted"  # the driver stopped (Ctrl-C, crash, taken over): runs again, costs no retry
