"""What a study will do, said before it starts: its rung ladder, how long its sampler proposes at random,
and whether the budget is large enough for either (`study run` prints it at the start, `space check` too),
and which configurations it proposes first (its seeds: a warm start's front, the space's defaults).

A user who runs `--budget 6` with a model-based sampler that needs 8 results, or a ladder of two rungs
whose lower one is too short to score above chance, learns it here rather than from the results. The
expected counts assume Hyperband's bracket draw (`rungs.bracket_distribution`) and the promotion of the
top 1/eta at each rung (`rungs.promotion_quota`, asymptotically), after the seeds: each costs one full trial
and gives one result at the top rung, since under Hyperband the seeds train straight to full fidelity
(`strategy.make_scheduler`). They are estimates, said as such.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from autopeft.engine.strategy import STRATEGIES, check_strategy
from autopeft.errors import ConfigError
from autopeft.search.rungs import bracket_distribution, rung_levels, validate_fidelities

if TYPE_CHECKING:
    from autopeft.train.recipe import TrialRecipe

#: sampler -> (what proposes once it has enough results, the constructor option that says how many; None:
#: random throughout). The numbers themselves are read from the samplers' defaults, so they cannot drift.
SAMPLER_MODELS: dict[str, tuple[str, str | None]] = {
    "mobo": ("BoTorch qLogNEHVI", "min_points"),
    "tpe": ("Optuna's TPE", "n_startup_trials"),
    "nsga2": ("Optuna's NSGA-II", "population_size"),
    "random": ("scrambled Sobol (random)", None),
}


@dataclass(frozen=True)
class StudyPlan:
    """The plan of a study, as plain data (`as_json`) and as the lines a command prints (`lines`)."""

    strategy: str
    unit: str
    eta: float
    rungs: tuple[int, ...]  # the fidelities the scheduler stops trials at: just the maximum without Hyperband
    start_shares: tuple[float, ...]  # the share of new trials that start at each rung (Hyperband's brackets)
    model: str  # what proposes once `model_after` results are in
    model_after: int | None  # results at one fidelity before the sampler stops proposing at random (None: never)
    budget: float | None  # in full-fidelity trials (None: a time limit only)
    seeds: int  # configurations proposed first, each trained to full fidelity
    expected_trials: float | None  # how many trials the budget buys, about
    model_budget: float | None  # the budget after which the model's first proposals are expected
    ladder_budget: float | None  # the budget after which one trial is expected to climb the whole ladder
    warnings: tuple[str, ...]

    def lines(self) -> list[str]:
        """What `study run` prints before its first trial (and `space check` in its table)."""
        return [self.ladder_line(), self.proposals_line(), *(f"warning: {w}" for w in self.warnings)]

    def ladder_line(self) -> str:
        ladder = " -> ".join(f"{r:,}" for r in self.rungs) + f" {self.unit}"
        if len(self.rungs) == 1:
            return f"rungs: {ladder} (every trial trains to full fidelity)"
        starts = ", ".join(f"{100 * s:.0f}% at {r:,}" for r, s in zip(self.rungs, self.start_shares, strict=True))
        return f"rungs (eta {self.eta:g}): {ladder}; new trials start {starts}"

    @property
    def needed(self) -> str:
        """The results the model waits for: `8 results`, or `8 results at one fidelity` with a ladder."""
        return f"{self.model_after} results" + ("" if len(self.rungs) == 1 else " at one fidelity")

    def proposals_line(self) -> str:
        if self.model_after is None:
            return f"proposals: {self.model} throughout"
        text = f"proposals: random until {self.needed}, then {self.model}"
        if self.model_budget is not None:
            text += f" (expected after about {self.model_budget:.1f} full trials of budget)"
        return text

    def as_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "unit": self.unit, "eta": self.eta, "rungs": list(self.rungs),
                "start_shares": list(self.start_shares), "model": self.model, "model_after": self.model_after,
                "budget": self.budget, "seeds": self.seeds, "expected_trials": self.expected_trials,
                "model_budget": self.model_budget, "ladder_budget": self.ladder_budget, "warnings": list(self.warnings)}


def study_rungs(strategy: str, min_fidelity: int, max_fidelity: int, eta: float) -> tuple[int, ...]:
    """The rungs the strategy's scheduler uses (`strategy.make_scheduler`'s rule): Hyperband's ladder, or
    just the maximum for a full-fidelity strategy or a recipe whose minimum is its maximum."""
    _, multi_fidelity = STRATEGIES[check_strategy(strategy)]
    validate_fidelities(min_fidelity, max_fidelity, eta)
    if multi_fidelity and min_fidelity < max_fidelity:
        return tuple(rung_levels(min_fidelity, max_fidelity, eta))
    return (max_fidelity,)


def sampler_threshold(sampler: str) -> int | None:
    """How many results the sampler waits for before it stops proposing at random (None: it never does)."""
    from autopeft.search.samplers import SAMPLERS

    _, option = SAMPLER_MODELS[sampler]
    if option is None:
        return None
    return int(inspect.signature(SAMPLERS[sampler].__init__).parameters[option].default)


def per_trial(rungs: tuple[int, ...], eta: float) -> tuple[float, tuple[float, ...]]:
    """What one new trial costs on average (in full-fidelity trials) and how many results it gives at each
    rung: it starts at rung s with Hyperband's bracket share, and moves on from each rung with chance 1/eta."""
    shares = bracket_distribution(len(rungs), eta)
    top = rungs[-1]
    cost, results = 0.0, [0.0] * len(rungs)
    for start, share in enumerate(shares):
        reach, below = share, 0
        for k in range(start, len(rungs)):
            results[k] += reach
            cost += reach * (rungs[k] - below) / top
            reach, below = reach / eta, rungs[k]
    return cost, tuple(results)


def study_plan(strategy: str, min_fidelity: int, max_fidelity: int, *, eta: float = 3.0,
               budget: float | None = None, unit: str = "steps", seeds: int = 0) -> StudyPlan:
    """The plan of a study with these options; raises `ConfigError` on an unknown strategy, a bad eta or budget.

    ``seeds``: how many configurations the study proposes first (a warm start's front, the space's defaults).
    """
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ConfigError(f"must be > 0 and finite, got {budget}", field="budget")
    rungs = study_rungs(strategy, min_fidelity, max_fidelity, eta)
    sampler, _ = STRATEGIES[strategy]
    model, _ = SAMPLER_MODELS[sampler]
    threshold = sampler_threshold(sampler)
    cost, results = per_trial(rungs, eta)
    starts = tuple(bracket_distribution(len(rungs), eta))
    model_budget = None if threshold is None else _model_budget(threshold, seeds, cost, results)
    ladder_budget = None if len(rungs) == 1 else seeds + eta ** (len(rungs) - 1) * cost / starts[0]
    trials = None if budget is None else min(budget, seeds) + max(0.0, budget - seeds) / cost
    plan = StudyPlan(strategy=strategy, unit=unit, eta=eta, rungs=rungs, start_shares=starts, model=model,
                     model_after=threshold, budget=budget, seeds=seeds, expected_trials=trials,
                     model_budget=model_budget, ladder_budget=ladder_budget, warnings=())
    single = len(rungs) == 1 and STRATEGIES[strategy][1]
    return replace(plan, warnings=tuple(_warnings(plan, min_fidelity, one_rung=single)))


def _model_budget(threshold: int, seeds: int, cost: float, results: tuple[float, ...]) -> float:
    """The budget spent when some rung first holds ``threshold`` results: the seeds' (one full trial and one
    top-rung result each), then new trials' (``cost`` each, ``results`` per rung)."""
    if threshold <= seeds:
        return float(threshold)
    top = len(results) - 1
    still = min((threshold - (seeds if k == top else 0)) / per for k, per in enumerate(results))
    return seeds + still * cost


def _warnings(plan: StudyPlan, min_fidelity: int, *, one_rung: bool) -> list[str]:
    """A Hyperband strategy with a single rung, and a budget too small for the model or for the ladder."""
    out = []
    if one_rung:
        out.append(f"one rung only: the recipe's fidelity min {min_fidelity:,} times eta {plan.eta:g} exceeds its "
                   f"max {plan.rungs[-1]:,}, so Hyperband stops no trial early")
    budget, trials = plan.budget, plan.expected_trials
    if budget is None or trials is None:
        return out
    if plan.model_budget is not None and budget <= plan.model_budget:
        out.append(f"every proposal will be random: the budget of {budget:g} full trials buys about {trials:.0f} "
                   f"trials, and {plan.model} needs {plan.needed} first (a budget of {plan.model_budget:.1f} "
                   "or more)")
    if plan.ladder_budget is not None and budget < plan.ladder_budget:
        climb = plan.eta ** (len(plan.rungs) - 1)
        lowest = (trials - min(budget, plan.seeds)) * plan.start_shares[0]  # the seeds start at the top
        out.append(f"the budget of {budget:g} full trials is small for the ladder: about "
                   f"{lowest:.0f} trials will start at {plan.rungs[0]:,} {plan.unit}, fewer "
                   f"than the {climb:g} it takes for one to be promoted to {plan.rungs[-1]:,} (a budget of "
                   f"{plan.ladder_budget:.1f} or more)")
    return out


def recipe_plan(recipe: TrialRecipe, strategy: str, *, eta: float = 3.0, budget: float | None = None,
                seeds: int = 0) -> StudyPlan:
    """`study_plan` with the recipe's fidelity range and unit: what `study run` and `space check` print."""
    fidelity = recipe.fidelity
    return study_plan(strategy, fidelity.min, fidelity.max, eta=eta, budget=budget, unit=fidelity.unit,
                      seeds=seeds)


def proposed_seeds(seeds: Sequence[tuple[str, Mapping[str, Any]]],
                   feasible: Callable[[Mapping[str, Any]], bool] | None = None) -> list[tuple[str, Mapping[str, Any]]]:
    """The seeds a study proposes: a warm start's front, and those of the space's defaults that meet the
    space's constraints on the model (`SeededSampler` skips the others)."""
    from autopeft.engine.warm_start import is_warm_start

    return [(name, config) for name, config in seeds
            if is_warm_start(name) or feasible is None or feasible(config)]


def seeds_line(seeds: Sequence[tuple[str, Mapping[str, Any]]],
               feasible: Callable[[Mapping[str, Any]], bool] | None = None) -> str | None:
    """What a study proposes before its sampler: the front of a warm start's study, then the space's defaults
    (`study run` prints it with the plan); None where it proposes none. ``feasible``: the space's constraints
    on the model, which a seed must meet to be proposed (`SeededSampler`)."""
    from autopeft.engine.warm_start import is_warm_start, warm_start_study

    proposed = proposed_seeds(seeds, feasible)
    warm = [name for name, _ in proposed if is_warm_start(name)]
    kept = len(proposed) - len(warm)  # the defaults the constraints allow
    parts = []
    if warm:
        studies = ", ".join(dict.fromkeys(warm_start_study(name) for name in warm))
        parts.append(f"{len(warm)} from the front of {studies}")
    if kept:
        parts.append(f"{kept} of the space's defaults")
    if not parts:
        return None
    skipped = len(seeds) - len(proposed)
    note = (f" ({skipped} more default{'s' if skipped > 1 else ''} break{'' if skipped > 1 else 's'} the "
            "space's constraints on this model: skipped)") if skipped else ""
    return f"first: {', then '.join(parts)}{note}"
