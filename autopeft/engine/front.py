"""The Pareto front of a study, read from the store: completed trials at full fidelity, non-dominated,
better than the objectives' references (a score above chance).

Only results at the recipe's maximum fidelity enter the front: a trial stopped at a low rung was
measured on a cheaper proxy, and mixing fidelities would put half-trained scores beside full ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from autopeft.engine.definition import SCORE, StudyDefinition
from autopeft.search.pareto import Objective, hypervolume, pareto_front_mask, reference_point, to_minimization
from autopeft.store import Store, TrialStatus


@dataclass(frozen=True)
class FrontEntry:
    """One trial on (or off) the front, with what `pareto`, `export` and the dashboard show."""

    trial_id: int  # the store's id
    number: int  # the trial's number within the study
    config: dict[str, Any]
    plan: dict[str, Any] | None
    objectives: dict[str, float]
    metrics: dict[str, Any]
    fidelity: int


@dataclass(frozen=True)
class Front:
    """The front (best score first), every full-fidelity trial, and the front's hypervolume."""

    objectives: tuple[Objective, ...]
    entries: tuple[FrontEntry, ...]
    completed: tuple[FrontEntry, ...]
    hypervolume: float | None


def empty_front_reason(front: Front) -> str:
    """Why ``front`` has no entries, in words a user can act on (for `pareto`, `export` and the dashboard)."""
    if not front.completed:
        return "no trial has completed at full fidelity yet"
    score = next((o for o in front.objectives if o.name == SCORE), None)
    floor = f" ({score.reference:.4g}, what always predicting the most common label scores)" if score else ""
    return (f"none of its {len(front.completed)} full-fidelity trial(s) scores above chance{floor}; "
            "`pareto --all` lists them, `export --trial N` exports one")


def compute_front(objectives: tuple[Objective, ...], completed: list[FrontEntry]) -> Front:
    """Non-dominated entries among ``completed`` (all objectives), best score first, with their hypervolume."""
    if not completed:
        return Front(objectives, (), (), None)
    raw = np.array([[e.objectives[o.name] for o in objectives] for e in completed], dtype=np.float64)
    points = to_minimization(raw, [o.direction for o in objectives])
    mask = pareto_front_mask(points)
    # A trial no better than the reference (a score at chance) adds no hypervolume: it is no trade-off to offer.
    shown = mask & np.all(points < reference_point(objectives), axis=1)
    entries = [e for e, keep in zip(completed, shown, strict=True) if keep]
    entries.sort(key=lambda e: (-e.objectives.get(SCORE, 0.0), e.number))
    volume = hypervolume(points[mask], reference_point(objectives))
    return Front(objectives, tuple(entries), tuple(completed), float(volume))


def study_front(store: Store, name: str) -> Front:
    """The current front of study ``name`` from the store."""
    definition = StudyDefinition.from_record(store.get_study(name))
    trials = {t.number: t for t in store.trials(name)}
    completed = []
    for result in store.results(name, fidelity=definition.max_fidelity):
        trial = trials.get(result.trial_number)
        if trial is None or trial.status is not TrialStatus.COMPLETE:
            continue
        if not all(o.name in result.objectives for o in definition.objectives):
            continue
        completed.append(FrontEntry(trial.id, trial.number, dict(trial.config), trial.plan, dict(result.objectives),
                                    dict(result.metrics), result.fidelity))
    return compute_front(definition.objectives, completed)
