"""The dashboard's reads: a read-only store turned into the plain views its pages draw (`views`).

Every page reads with a few bulk queries, whatever the number of trials (the store's `study_overviews`,
`read_study` and `study_version`), never one query per trial; `load_study` is cached by the app under
`study_version`, which changes whenever the study does. Nothing here imports Streamlit, starts work or
writes: open the store with `open_read_only`. Errors are the store's one-line `StoreError` (an
unreachable or malformed URL, a missing SQLite file) and `NotFoundError` (an unknown study).

Queries per page:

- studies page (`list_studies`): five aggregates over the whole store, in one transaction;
- study page (`load_study`): the study row, the five small aggregates of its version, then its trials,
  results, attempts and snapshots (one query each), in one transaction;
- the live check (`study_version`): the five small aggregates alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from autopeft.dashboard.views import AttemptPoint, ResultPoint, SnapshotPoint, StudySummaryRow, StudyView, TrialView
from autopeft.engine.announce import study_rungs
from autopeft.engine.definition import SCORE, TRAINABLE_PARAMS, StudyDefinition
from autopeft.engine.front import FrontEntry, compute_front
from autopeft.engine.loop import budget_spent
from autopeft.errors import ConfigError
from autopeft.status import TrialStatus
from autopeft.store import ResultRecord, Store, StoreError, StudyRecord, TrialRecord
from autopeft.store.bulk import gc_paused

__all__ = ["list_studies", "load_study", "open_read_only", "study_version"]


def open_read_only(url: str) -> Store:
    """The store at ``url``, for reading only (SQLite ``mode=ro``, PostgreSQL read-only sessions).

    A missing SQLite file, a malformed URL or an unknown backend is a one-line `StoreError` (raised here or
    on the first read, which is where an unreachable server shows).
    """
    return Store(url, read_only=True)


def list_studies(store: Store) -> list[StudySummaryRow]:
    """Every study in the store, oldest first, as the studies page lists them."""
    rows = []
    for overview in store.study_overviews(best_of=SCORE):
        study = overview.study
        definition = _definition(study)
        max_fidelity = _max_fidelity(definition, study.name) if definition is not None else None
        rows.append(StudySummaryRow(
            name=study.name, status=study.status.value, strategy=study.strategy,
            objectives=tuple(o.name for o in definition.objectives) if definition is not None else (),
            budget_total=_budget_total(definition),
            budget_used=overview.reached / max_fidelity if max_fidelity else 0.0,
            counts={s.value: n for s, n in overview.counts.items()},
            best_score=overview.best.get(max_fidelity) if max_fidelity else None,
            hypervolume=overview.hypervolume, created_at=study.created_at, last_activity=overview.last_activity))
    return rows


def study_version(store: Store, name: str) -> tuple[Any, ...]:
    """What changes whenever study ``name`` changes (a few small aggregates): the cache key of `load_study`."""
    return store.study_version(name)


def load_study(store: Store, name: str, *, detail: bool = True,
               plan_lines: MutableMapping[int, str] | None = None) -> StudyView:
    """Everything the study and trial pages draw, read in one transaction (`Store.read_study`).

    ``front`` is exactly `autopeft.engine.front.study_front` (what `autopeft pareto` prints), computed by
    the same `compute_front` from the same full-fidelity results. Without ``detail`` (the study page) the
    results below full fidelity come without their metrics and only running attempts are read: the page
    shows neither, and they are most of a large study's bytes. ``view.detail`` says which it is.
    ``plan_lines``: the plan lines of an earlier view of the same store, kept by the new one (see there).
    """
    with gc_paused():  # see there: a large study builds ~10^6 objects here
        view = _load_study(store, name, detail)
    return view if plan_lines is None else dataclasses.replace(view, plan_lines=plan_lines)


def _load_study(store: Store, name: str, detail: bool) -> StudyView:
    if detail:
        contents = store.read_study(name)
    else:  # the maximum fidelity first: it is in the study's recipe, which never changes
        definition = _definition(store.get_study(name))
        top = _max_fidelity(definition, name) if definition is not None else None
        contents = store.read_study(name, metrics_at=top if top is not None else -1, open_attempts_only=True)
    study = contents.study
    definition = _definition(study)
    if definition is None:
        raise StoreError(f"study {name!r} has no readable definition (objectives or recipe) in {store}")
    max_fidelity = _max_fidelity(definition, name)
    if max_fidelity is None:
        raise StoreError(f"study {name!r} has no fidelity range in its recipe ({store})")

    trials = {t.number: t for t in contents.trials}
    last: dict[int, ResultRecord] = {}  # each trial's result at its highest fidelity
    for result in contents.results:  # by trial number, then fidelity
        last[result.trial_number] = result
    front = compute_front(definition.objectives, _completed(definition, trials, contents.results, max_fidelity))
    on_front = {e.number for e in front.entries}
    training_to = {a.trial_number: a.fidelity for a in contents.attempts if a.ended_at is None}

    return StudyView(
        name=study.name, status=study.status.value, strategy=study.strategy, definition=definition,
        trials=tuple(_trial_view(t, last.get(t.number), t.number in on_front, training_to.get(t.number))
                     for t in contents.trials),
        results=tuple(ResultPoint(r.trial_number, r.fidelity, r.objectives, r.metrics, r.created_at)
                      for r in contents.results),
        snapshots=_snapshots(study, contents.trials, contents.results, contents.snapshots, max_fidelity),
        attempts=tuple(AttemptPoint(a.trial_number, a.number, a.fidelity, a.resume_from, a.worker, a.outcome,
                                    a.error, a.started_at, a.ended_at) for a in contents.attempts),
        front=front, rungs=_rungs(study.strategy, definition), base_params=_base_params(definition, contents.results),
        budget_total=_budget_total(definition), budget_used=budget_spent(contents.results, max_fidelity),
        version=contents.version, driver=study.lease_holder, driver_heartbeat=study.lease_heartbeat,
        detail=detail)


# -- pieces ------------------------------------------------------------------------------------------------


def _definition(study: StudyRecord) -> StudyDefinition | None:
    """The study's definition, or None when its stored objectives cannot be read (not an engine's study)."""
    try:
        return StudyDefinition.from_record(study)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _max_fidelity(definition: StudyDefinition, name: str) -> int | None:
    try:
        return definition.max_fidelity
    except (KeyError, TypeError, ValueError):
        return None


def _budget_total(definition: StudyDefinition | None) -> float | None:
    budget = None if definition is None else definition.options.get("budget")
    return float(budget) if budget else None


def _completed(definition: StudyDefinition, trials: dict[int, TrialRecord], results: Iterable[ResultRecord],
               max_fidelity: int) -> list[FrontEntry]:
    """The full-fidelity results of complete trials with every objective: `study_front`'s rule and order."""
    names = [o.name for o in definition.objectives]
    completed = []
    for result in results:
        if result.fidelity != max_fidelity:
            continue
        trial = trials.get(result.trial_number)
        if trial is None or trial.status is not TrialStatus.COMPLETE:
            continue
        if not all(n in result.objectives for n in names):
            continue
        completed.append(FrontEntry(trial.id, trial.number, trial.config, trial.plan, result.objectives,
                                    result.metrics, result.fidelity))
    return completed


def _trial_view(trial: TrialRecord, last: ResultRecord | None, on_front: bool, training_to: int | None) -> TrialView:
    return TrialView(id=trial.id, number=trial.number, status=trial.status, config=trial.config, plan=trial.plan,
                     bracket=trial.bracket, worker=trial.worker, error=trial.error, created_at=trial.created_at,
                     started_at=trial.started_at, finished_at=trial.finished_at,
                     fidelity=None if last is None else last.fidelity,
                     objectives={} if last is None else last.objectives, on_front=on_front,
                     training_to=training_to if trial.status is TrialStatus.RUNNING else None)


def _snapshots(study: StudyRecord, trials: Sequence[TrialRecord], results: Sequence[ResultRecord],
               snapshots: Sequence[Any], max_fidelity: int) -> tuple[SnapshotPoint, ...]:
    """Each snapshot with the budget spent by the results stored up to its time (`budget_spent`'s count: each
    trial's highest fidelity so far, over the maximum) and the seconds since the first trial started."""
    numbers = {t.id: t.number for t in trials}
    starts = [t.started_at for t in trials if t.started_at is not None]
    origin: datetime = min(starts) if starts else study.created_at
    by_time = sorted(results, key=lambda r: r.created_at)
    reached: dict[int, int] = {}
    total, i = 0, 0
    spent: dict[int, float] = {}
    for index in sorted(range(len(snapshots)), key=lambda k: snapshots[k].created_at):
        moment = snapshots[index].created_at
        while i < len(by_time) and by_time[i].created_at <= moment:
            result = by_time[i]
            before = reached.get(result.trial_number, 0)
            if result.fidelity > before:
                reached[result.trial_number] = result.fidelity
                total += result.fidelity - before
            i += 1
        spent[index] = total / max_fidelity
    return tuple(SnapshotPoint(created_at=s.created_at, hypervolume=s.hypervolume,
                               trial_numbers=tuple(sorted(numbers[t] for t in s.trial_ids if t in numbers)),
                               budget_used=spent[k], seconds=(s.created_at - origin).total_seconds())
                 for k, s in enumerate(snapshots))


def _rungs(strategy: str, definition: StudyDefinition) -> tuple[int, ...]:
    """The Hyperband rungs the study's scheduler uses (`engine.strategy.make_scheduler`), else just the max."""
    try:
        return study_rungs(strategy, definition.min_fidelity, definition.max_fidelity,
                           float(definition.options.get("eta", 3.0)))
    except (ConfigError, TypeError, ValueError):  # not an engine's strategy, or a stored eta it never accepted
        return (definition.max_fidelity,)


def _base_params(definition: StudyDefinition, results: Iterable[ResultRecord]) -> float:
    """The base model's parameter count: the trainable_params objective's reference (full fine-tuning);
    without that objective, what a result's parameter count and share imply (0.0 without either)."""
    objective = definition.objective(TRAINABLE_PARAMS)
    if objective is not None:
        return float(objective.reference)
    for result in results:
        params, share = result.metrics.get(TRAINABLE_PARAMS), result.metrics.get("trainable_share")
        if isinstance(params, int | float) and isinstance(share, int | float) and share > 0:
            return float(params) / float(share)
    return 0.0
