"""Choosing the trial to export from a study's front: by number, by a parameter budget, or by a score floor.

The budget and floor rules search the front only: any completed trial meeting a budget is dominated by
(or equal to) a front trial that meets it too and scores at least as well, so nothing better is missed.
With `peft_only` they search every full-fidelity trial that `peft` can load instead: the trial that
dominates a loadable one may not be loadable itself. When no trial fits, the error says which one came
closest, so the user knows what to ask for instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autopeft.engine.definition import SCORE, TRAINABLE_PARAMS
from autopeft.engine.front import Front, FrontEntry, empty_front_reason
from autopeft.errors import AutopeftError, ConfigError
from autopeft.store import TrialRecord, TrialStatus


class SelectionError(AutopeftError, LookupError):
    """No trial of the study fits the export rule (or the study has no full-fidelity trial yet)."""


@dataclass(frozen=True)
class Rule:
    """At most one criterion; none means the best score."""

    trial: int | None = None
    max_params_pct: float | None = None  # trainable share, in percent of the base model
    min_score: float | None = None
    peft_only: bool = False  # only trials whose plan Hugging Face `peft` can load (combines with the others)

    def __post_init__(self) -> None:
        given = [n for n, v in (("trial", self.trial), ("max_params_pct", self.max_params_pct),
                                ("min_score", self.min_score)) if v is not None]
        if len(given) > 1:
            raise SelectionError(f"give at most one of trial, max_params_pct, min_score (got {', '.join(given)})")
        if self.max_params_pct is not None and not 0 < self.max_params_pct <= 100:  # NaN fails too
            raise ConfigError(f"must be in (0, 100], got {self.max_params_pct:g}", field="max_params_pct")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ConfigError(f"must be a finite number, got {self.min_score:g}", field="min_score")


#: Why `peft` cannot load a trial's plan (empty when it can): what `Rule.peft_only` filters on.
PeftCheck = Callable[[FrontEntry], Sequence[str]]


def score(entry: FrontEntry) -> float:
    return float(entry.objectives.get(SCORE, entry.metrics.get("score") or 0.0))


def trainable_params(entry: FrontEntry) -> float:
    value = entry.objectives.get(TRAINABLE_PARAMS, entry.metrics.get("trainable_params"))
    return float(value) if value is not None else float("inf")


def share_pct(entry: FrontEntry, front: Front | None = None) -> float | None:
    """Trainable parameters in % of the base model: the trial's own measure, else params / the objective's
    reference point (the base model's parameter count)."""
    share = entry.metrics.get("trainable_share")
    if isinstance(share, int | float):
        return 100.0 * float(share)
    reference = next((o.reference for o in front.objectives if o.name == TRAINABLE_PARAMS), None) if front else None
    params = trainable_params(entry)
    if reference and params != float("inf"):
        return 100.0 * params / reference
    return None


def _describe(entry: FrontEntry, front: Front) -> str:
    pct = share_pct(entry, front)
    share = f", {pct:.3g}%" if pct is not None else ""
    return f"trial {entry.number} (score {score(entry):.4g}, {trainable_params(entry):,.0f} params{share})"


def select(front: Front, rule: Rule, *, study: str = "the study", trials: Sequence[TrialRecord] = (),
           peft_check: PeftCheck | None = None) -> FrontEntry:
    """The entry `rule` picks; `SelectionError` naming the closest trial when none fits.

    `trials` (the study's trial rows) only improve the message for `rule.trial` naming a trial that
    has no full-fidelity result. `peft_check` is required with `rule.peft_only`.
    """
    if rule.peft_only and peft_check is None:
        raise ValueError("rule.peft_only needs a peft_check")
    if rule.trial is not None:
        entry = _by_number(front, rule.trial, study, trials)
        reasons = list(peft_check(entry)) if rule.peft_only and peft_check else []
        if reasons:
            raise SelectionError(f"peft cannot load trial {entry.number} of {study}: {reasons[0]}")
        return entry
    if not front.entries:
        raise SelectionError(f"{study}: {empty_front_reason(front)}")
    entries = _loadable(front, study, peft_check) if rule.peft_only and peft_check else list(front.entries)
    which = "that peft can load " if rule.peft_only else ""
    if rule.max_params_pct is not None:
        limit = rule.max_params_pct
        fits = [e for e in entries if (share_pct(e, front) or float("inf")) <= limit]
        if not fits:
            smallest = min(entries, key=lambda e: (trainable_params(e), -score(e)))
            raise SelectionError(f"no trial of {study} {which}has a trainable share <= {limit:g}%; the smallest is "
                                 f"{_describe(smallest, front)}")
        return min(fits, key=lambda e: (-score(e), trainable_params(e), e.number))
    if rule.min_score is not None:
        floor = rule.min_score
        fits = [e for e in entries if score(e) >= floor]
        if not fits:
            best = min(entries, key=lambda e: (-score(e), trainable_params(e)))
            raise SelectionError(f"no trial of {study} {which}scores >= {floor:g}; the best is "
                                 f"{_describe(best, front)}")
        return min(fits, key=lambda e: (trainable_params(e), -score(e), e.number))
    return min(entries, key=lambda e: (-score(e), trainable_params(e), e.number))


def _loadable(front: Front, study: str, peft_check: PeftCheck) -> list[FrontEntry]:
    """Every full-fidelity trial `peft` can load; `SelectionError` with the best trial's reason when none."""
    entries = sorted(front.completed, key=lambda e: (-score(e), trainable_params(e), e.number))
    why: dict[int, Sequence[str]] = {e.number: peft_check(e) for e in entries}
    loadable = [e for e in entries if not why[e.number]]
    if not loadable:
        best = entries[0]
        raise SelectionError(f"peft can load none of the {len(entries)} trials of {study} completed at full "
                             f"fidelity (the best, trial {best.number}: {why[best.number][0]}); search a space "
                             "with the peft_expressible constraint, such as search_spaces/lora_peft.yaml")
    return loadable


def _by_number(front: Front, number: int, study: str, trials: Sequence[TrialRecord]) -> FrontEntry:
    entry = next((e for e in front.completed if e.number == number), None)
    if entry is not None:
        return entry
    trial = next((t for t in trials if t.number == number), None)
    if trial is None:
        span = f"trials 0-{max(t.number for t in trials)}" if trials else "no trials"
        raise SelectionError(f"{study} has no trial {number} ({span})")
    if trial.status is TrialStatus.COMPLETE:
        why = "completed but has no result at full fidelity with every objective"
    else:
        why = f"is {trial.status.value}" + (f" ({trial.error})" if trial.error else "") + \
              ": only trials completed at full fidelity can be exported"
    raise SelectionError(f"trial {number} of {study} {why}")
