"""A study's trials, and one trial's results and jobs, as plain rows (no pandas, no Streamlit).

The dashboard's tables and CSV download and the command line's `study show` and `trial show` print these
same rows, so the two never disagree on what a trial's fidelity, values or plan are. Values are as stored
(numbers, strings, datetimes, None): the dashboard puts them in a DataFrame, the command line formats them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from autopeft.dashboard.views import StudyView
from autopeft.engine.definition import TRAINABLE_PARAMS
from autopeft.space.plan_text import plan_text
from autopeft.status import TrialStatus

__all__ = ["attempt_rows", "plan_line", "plan_of", "result_rows", "share_pct", "trial_columns", "trial_rows"]


def plan_of(value: Mapping[str, Any] | None) -> Mapping[Any, Any] | None:
    """The layer plan of a stored trial plan (the compiled configuration `{plan: ..., learning_rate: ...}`),
    or ``value`` itself when it is already a plan."""
    if value is not None and "plan" in value and (value["plan"] is None or isinstance(value["plan"], Mapping)):
        return value["plan"]
    return value


def plan_line(plan: Mapping[str, Any] | None) -> str:
    """A stored trial plan in one line (`L1-2 lora r8 qv`), or "" for a trial without one yet."""
    return plan_text(plan_of(plan)) if plan is not None else ""


def share_pct(values: Mapping[str, float], base_params: float) -> float | None:
    """The trainable parameters among ``values`` as a percentage of the base model, if both are known."""
    params = values.get(TRAINABLE_PARAMS)
    return 100.0 * float(params) / base_params if params is not None and base_params > 0 else None


def trial_columns(view: StudyView) -> list[str]:
    """The keys of `trial_rows`, in order: the CSV header."""
    names = [o.name for o in view.definition.objectives]
    return ["number", "status", "fidelity", *names, "share_pct", "plan", "worker", "error", "started", "finished"]


def trial_rows(view: StudyView, statuses: Collection[TrialStatus] | None = None) -> list[dict[str, Any]]:
    """Every trial (or those in ``statuses``), one row each: its values at the highest fidelity it reported.

    Plan lines come from `StudyView.plan_line` (written once per trial, kept across a dashboard's versions).
    """
    names = [o.name for o in view.definition.objectives]
    return [{"number": t.number, "status": t.status.value, "fidelity": t.fidelity,
             **{n: t.objectives.get(n) for n in names}, "share_pct": share_pct(t.objectives, view.base_params),
             "plan": view.plan_line(t.id, t.plan), "worker": t.worker, "error": t.error, "started": t.started_at,
             "finished": t.finished_at}
            for t in view.trials if statuses is None or t.status in statuses]


def result_rows(view: StudyView, number: int) -> list[dict[str, Any]]:
    """Trial ``number``'s results, one row per fidelity: objectives, then every scalar measure (the task's
    metrics as `metric NAME`), then when it was stored."""
    rows = []
    for r in view.results:
        if r.trial_number != number:
            continue
        metrics = {k: v for k, v in r.metrics.items() if isinstance(v, int | float | str | bool) or v is None}
        nested = r.metrics.get("metrics")
        if isinstance(nested, dict):
            metrics.update({f"metric {k}": v for k, v in nested.items()})
        rows.append({"fidelity": r.fidelity, **r.objectives,
                     **{k: v for k, v in metrics.items() if k not in r.objectives}, "at": r.created_at})
    return rows


def attempt_rows(view: StudyView, number: int) -> list[dict[str, Any]]:
    """Trial ``number``'s jobs (its attempts), oldest first: where each trained to, on which worker, how it
    ended, and how long it took."""
    return [{"attempt": a.number, "fidelity": a.fidelity, "resume_from": a.resume_from, "worker": a.worker,
             "outcome": a.outcome.value, "started": a.started_at, "ended": a.ended_at,
             "seconds": (a.ended_at - a.started_at).total_seconds() if a.ended_at else None, "error": a.error}
            for a in view.attempts if a.trial_number == number]
