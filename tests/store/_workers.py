"""Worker entry points for the multi-process store tests (importable by spawned children, no torch)."""

from __future__ import annotations

from typing import Any


def create_trials(url: str, study: str, count: int, barrier: Any, queue: Any) -> None:
    """Wait for every worker, then create `count` trials as fast as possible and report their numbers."""
    from autopeft.store import Store

    store = Store(url)
    try:
        store.get_study(study)  # connect and check the schema before the race starts
        barrier.wait(timeout=30)
        queue.put([store.create_trial(study, {"worker": True, "i": i}).number for i in range(count)])
    except BaseException as exc:
        queue.put(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        store.close()


def create_study_on_a_new_store(url: str, study: str, barrier: Any, queue: Any) -> None:
    """Wait for every worker, then open a store whose schema nobody has created yet and write a study."""
    from autopeft.store import Store

    barrier.wait(timeout=30)
    store = Store(url)
    try:
        queue.put(store.create_study(study).name)
    except BaseException as exc:
        queue.put(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        store.close()
