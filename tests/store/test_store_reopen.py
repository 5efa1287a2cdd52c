"""A pruned trial may be reopened as paused (a study resumed with a larger budget promotes it); nothing else moves."""

from __future__ import annotations

import pytest

from autopeft.store import InvalidValueError, Store, TrialStatus


def test_only_a_pruned_trial_reopens_and_only_as_paused(store_url: str) -> None:
    store = Store(store_url)
    store.create_study("s")
    pruned = store.create_trial("s", {})
    store.set_trial_status(pruned.id, TrialStatus.RUNNING)
    assert store.set_trial_status(pruned.id, TrialStatus.PRUNED).finished_at is not None
    with pytest.raises(InvalidValueError, match="is pruned; it cannot become running"):
        store.set_trial_status(pruned.id, TrialStatus.RUNNING)
    reopened = store.set_trial_status(pruned.id, TrialStatus.PAUSED)
    assert reopened.status is TrialStatus.PAUSED and reopened.finished_at is None
    store.start_attempt(pruned.id, 9, resume_from=3)  # runs again, from its checkpoint
    assert store.get_trial(pruned.id).status is TrialStatus.RUNNING
    for final in (TrialStatus.COMPLETE, TrialStatus.FAILED):
        other = store.create_trial("s", {})
        store.set_trial_status(other.id, final)
        with pytest.raises(InvalidValueError, match=f"is {final.value}; it cannot become paused"):
            store.set_trial_status(other.id, TrialStatus.PAUSED)
    store.close()
