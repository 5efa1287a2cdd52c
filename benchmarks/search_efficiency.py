"""Search efficiency: the compute each strategy needs to reach a hypervolume, against the strongest peers.

Every method faces the same `Problem` (a search space, the exact trainable-parameter count, a score over
configuration and fidelity, a fidelity ladder) with the same compute budget per run, counted in
full-fidelity trial equivalents as the study budget counts them (a job from fidelity a to b costs
(b - a) / max) and, apart, in wall time: the seconds the method itself spent (proposals, scheduling,
bookkeeping; measured) plus the training time the compute stands for (`Problem.full_trial_seconds` per
full trial; nominal, as the problem's training is simulated).

Methods:
- ours: every autopeft strategy (`random`, `hyperband`, `tpe`, `nsga2`, `mobo`, `mobo-hyperband`) through
  the real study loop and store (SQLite, in-process executor), as `benchmarks/strategies.py` runs them;
- peers, each at its strongest ordinary setting (what a competent user switches on without new code):
  - `optuna-gp`: Optuna's `GPSampler` (multi-objective: log-EHVI), defaults (10 random start-up trials,
    noisy objective), over the conditional (define-by-run) space: it models the parameters every trial
    has (the intersection search space) and samples the conditional sizes at random. The flat space
    (every parameter suggested in every trial, the inactive ones ignored: `optuna-gp-flat`) lets the GP
    model the sizes too, but measured weaker on the synthetic problem (median final hypervolume 0.578
    against 0.594 over 10 seeds, with 8x the proposal time), so the conditional space is the peer;
  - `optuna-tpe`: Optuna's TPE with `multivariate=True, group=True` (the documented setting for
    conditional, define-by-run spaces) and the default 10 start-up trials;
  - `optuna-nsga2`: Optuna's NSGA-II over the conditional space with a population of budget/3 (at least
    4): the default 50 would leave a 30-trial study entirely in its random first generation (the flat
    space, `optuna-nsga2-flat`, measured weaker: 0.536 against 0.567 over 10 seeds);
  - the Optuna peers run every trial at full fidelity: Optuna cannot prune multi-objective studies;
  - `syne-moasha`: Syne Tune's `MOASHA` (multi-objective asynchronous successive halving, non-dominated
    sorting), driven as its `Tuner` drives it with one worker: each trial reports after every step of
    the problem's report ladder and stops when MOASHA says so; grace period = the ladder's lowest
    fidelity, reduction factor = the problem's eta, one bracket (its default); flat space;
  - `random-search`: uniform random configurations of the space at full fidelity.

Hypervolume: of the full-fidelity front found so far, (score, trainable parameters), from one fixed
reference point per problem (the score floor, the space's largest parameter count), the same for every
method. Anytime curves: that hypervolume against compute spent. The target of a problem is the best
peer's final hypervolume (median over seeds at the full budget); for each method: the compute it needs
to reach it (per seed the first compute at which its front's hypervolume reaches the target; median
over seeds, null if the median seed never does), and `compute_ratio_vs_best_peer` = our best strategy's
compute to reach the target / the best peer's compute (the budget it spent to get there). Below 1 is
better; the issue's target is 1/3.

Problems: `synthetic` (the synthetic problem of `benchmarks/strategies.py`: the `mixed` space on
MiniLM-L6 with exact counts, a formula for the score, noise fixed per configuration and fidelity; the fast
CI case), and `blackbox-<space>-<task>` for `lora`/`mixed` x `sst2`/`mrpc`/`mrpc-long`: scores from the
surrogate of real training (`benchmarks/peft_blackbox/surrogate.py`: gradient boosting fitted on the
blackbox table when the problem is built, plus the measured run-to-run noise drawn from (config, fidelity,
seed)), exact counts from `ParamCounter` with the collector's recipe, fidelity 512-4,096 examples
(1,024-16,384 for `mrpc-long`; eta 2), chance (the dev split's majority class) as the score floor. It
needs the GLUE files and at least 20 complete configurations of its list in the table (building it says
how many there are).

Full run:  python benchmarks/search_efficiency.py               (budget 30, 10 seeds, every method)
           [--jobs 2: seeds in parallel processes; timings then share the CPU]
CI smoke:  python benchmarks/search_efficiency.py --quick       (budget 6, 1 seed, a few methods; seconds)
Outputs:   benchmarks/results/search_efficiency.json (and _quick), search_efficiency_<problem>.png
"""

from __future__ import annotations

import abc
import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.search.pareto import Objective  # noqa: E402
from autopeft.space.params import Param  # noqa: E402
from benchmarks.machine_info import cpu_model  # noqa: E402

OURS = ("random", "hyperband", "tpe", "nsga2", "mobo", "mobo-hyperband")
DEFAULT_OURS = "mobo-hyperband"
PEERS = ("optuna-gp", "optuna-tpe", "optuna-nsga2", "syne-moasha", "random-search")
# Weaker settings, for checking that the peers above are the stronger ones (not run by default).
VARIANTS = ("optuna-gp-flat", "optuna-nsga2-flat", "mobo-hyperband-mf", "mobo-hyperband-hv", "mobo-hyperband-local",
            "mobo-hyperband-stopped")
#: Our strategies with an option, measured before it becomes a default: name -> (strategy, `StrategyOptions`).
OUR_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobo-hyperband-mf": ("mobo-hyperband", {"sampler": {"multi_fidelity": True}}),  # one GP over every rung
    # Promotion cuts a front by hypervolume contribution from the chance reference instead of crowding.
    "mobo-hyperband-hv": ("mobo-hyperband", {"tie_break": "hypervolume"}),
    # Local search around the front: most of the acquisition's pool mutates the front (default 512 + 256).
    "mobo-hyperband-local": ("mobo-hyperband", {"sampler": {"pool_size": 128, "num_mutations": 640}}),
    # Proposals that know the scheduler: trials it stopped count at the top rung at their last score.
    "mobo-hyperband-stopped": ("mobo-hyperband", {"sampler": {"stopped_at_last_score": True}}),
}
QUICK_METHODS = ("random", "hyperband", "optuna-tpe", "syne-moasha", "random-search")
GRID_POINTS = 121


# -- the problem --------------------------------------------------------------------------------------

def hypervolume_share(points: Sequence[tuple[float, float]], score_floor: float, max_params: float,
                      score_ceiling: float = 1.0) -> float:
    """Hypervolume of (score, params) points from (score_floor, max_params), as a share of the box from that
    point to (score_ceiling, 0 parameters): every benchmark's measure of a front (`Problem.hv`, real studies)."""
    if not points:
        return 0.0
    import numpy as np

    from autopeft.search.pareto import hypervolume, pareto_front_mask

    minimised = np.array([[-s, p] for s, p in points])
    mask = pareto_front_mask(minimised)
    volume = float(hypervolume(minimised[mask], np.array([-score_floor, max_params])))
    return volume / ((score_ceiling - score_floor) * max_params)


class Problem(abc.ABC):
    """What a method searches: a space, the exact parameter count, a score over configuration and fidelity.

    Implementations: `SyntheticProblem` (a formula, for CI) and `benchmarks/peft_blackbox/surrogate.py`'s
    `BlackboxProblem` (a surrogate fitted on real training runs); the harness takes both unchanged.
    """

    name: str
    dims: Mapping[str, Param]  # the space's dimensions (autopeft `Param`s, conditional ones included)
    objectives: tuple[Objective, ...]  # ("score" max, "trainable_params" min) for the study loop
    min_fidelity: int
    max_fidelity: int
    eta: float  # the fidelity ladder of successive halving: min, min * eta, ..., max
    report_fidelities: tuple[int, ...]  # where a learning curve can be read (peers that report per step)
    score_floor: float  # the reference point's score: chance
    score_ceiling: float = 1.0  # the best score possible (hypervolumes are shares of the box up to it)
    max_params: float  # the reference point's parameter count: the space's largest
    full_trial_seconds: float  # nominal training seconds of one full-fidelity trial (for wall time)
    defaults: tuple[dict[str, Any], ...] = ()  # the space's `defaults`, which our strategies propose first

    @abc.abstractmethod
    def score(self, config: Mapping[str, Any], fidelity: int, seed: int) -> float:
        """The score of ``config`` trained to ``fidelity``; ``seed`` is the run's (a surrogate's noise draw)."""

    @abc.abstractmethod
    def params(self, config: Mapping[str, Any]) -> int:
        """The exact trainable-parameter count."""

    def feasible(self, config: Mapping[str, Any]) -> bool:
        return True

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random configuration (log-uniform on log ranges); inactive parameters absent."""
        from autopeft.space.space import _draw

        config: dict[str, Any] = {}
        for name, param in self.dims.items():
            if param.active(config):
                config[name] = _draw(param, rng)
        return config

    def hv(self, points: Sequence[tuple[float, float]]) -> float:
        """Hypervolume of (score, params) points from (score_floor, max_params), as a share of the box
        from that point to (score_ceiling, 0 parameters)."""
        return hypervolume_share(points, self.score_floor, self.max_params, self.score_ceiling)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dimensions": len(self.dims),
                "fidelity": {"min": self.min_fidelity, "max": self.max_fidelity, "eta": self.eta},
                "reference_point": {"score": self.score_floor, "trainable_params": self.max_params},
                "hv_unit": {"score_ceiling": self.score_ceiling, "note": "hypervolume as a share of the box "
                            "from the reference point to (score_ceiling, 0 parameters)"},
                "full_trial_seconds": self.full_trial_seconds}


class SyntheticProblem(Problem):
    """`benchmarks/strategies.py`'s problem: `mixed` on MiniLM-L6, exact counts, a formula for the score.

    Its noise is a fixed function of configuration and fidelity (the seed is not used): reading a
    configuration twice gives the same score, like replaying one real run.
    """

    name = "synthetic"

    def __init__(self) -> None:
        from autopeft.engine.definition import make_objectives
        from benchmarks import strategies

        self._s = strategies
        inner = strategies.Problem()
        self._inner = inner
        self.dims = inner.dims
        self.objectives = inner.objectives
        self.counter = inner.counter
        self.min_fidelity, self.max_fidelity, self.eta = strategies.MIN_F, strategies.MAX_F, strategies.ETA
        step = self.min_fidelity
        ladder = set(range(step, self.max_fidelity + 1, step))
        ladder |= {round(self.min_fidelity * self.eta ** k) for k in range(4)
                   if self.min_fidelity * self.eta ** k <= self.max_fidelity}
        self.report_fidelities = tuple(sorted(ladder))
        self.score_floor = 0.5
        self.objectives = make_objectives(("score", "trainable_params"), base_params=self.counter.base_params,
                                          chance=self.score_floor)
        self.defaults = tuple(config for _, config in inner.space.default_configs(inner.num_layers))
        self.max_params = inner.max_params
        self.full_trial_seconds = 90.0  # MiniLM-L6 on 16,384 SST-2 examples at about 180 examples/s (CPU)

    def score(self, config: Mapping[str, Any], fidelity: int, seed: int) -> float:
        return self._s.score_at(dict(config), fidelity, self._inner.num_layers)

    def params(self, config: Mapping[str, Any]) -> int:
        return int(self.counter.count(dict(config)))

    def feasible(self, config: Mapping[str, Any]) -> bool:
        return bool(self.counter.feasible(dict(config)))


def _blackbox(space: str, task: str) -> Callable[[], Problem]:
    """A factory of the surrogate problem (imported when built: it reads the table and the GLUE files)."""
    def build() -> Problem:
        from benchmarks.peft_blackbox.surrogate import BlackboxProblem

        return BlackboxProblem(space, task)
    return build


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "synthetic": SyntheticProblem,
    **{f"blackbox-{space}-{task}": _blackbox(space, task)
       for space in ("lora", "mixed") for task in ("sst2", "mrpc", "mrpc-long")},
}


# -- accounting ---------------------------------------------------------------------------------------

class Tracker:
    """Compute spent, the full-fidelity points found, and the anytime events (compute, hv, seconds).

    Seconds are the method's own (proposals, scheduling, the loop and its store), measured; the
    tracker's hypervolume updates are taken out.
    """

    def __init__(self, problem: Problem, budget: float) -> None:
        self.problem, self.budget = problem, budget
        self.compute = 0.0
        self.points: list[tuple[float, float]] = []
        self.configs: list[Mapping[str, Any]] = []  # the configuration of each of `points`
        self.events: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        self.jobs = 0
        self._harness = 0.0
        self._t0 = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self._t0 - self._harness

    def evaluate(self, config: Mapping[str, Any], start: int, fidelity: int, seed: int) -> tuple[float, float]:
        """Train ``config`` from ``start`` to ``fidelity``: charge the compute, record a full-fidelity point."""
        score = self.problem.score(config, fidelity, seed)
        params = float(self.problem.params(config))
        started = time.perf_counter()
        self.compute += (fidelity - start) / self.problem.max_fidelity
        self.jobs += 1
        hv = self.events[-1][1]
        if fidelity >= self.problem.max_fidelity:
            self.points.append((score, params))
            self.configs.append(config)
            hv = self.problem.hv(self.points)
        self._harness += time.perf_counter() - started
        self.events.append((self.compute, hv, self.seconds()))
        return score, params

    @property
    def spent(self) -> bool:
        return self.compute >= self.budget - 1e-9

    def front_configs(self) -> list[dict[str, Any]]:
        """The configurations on the full-fidelity front, each once: what a warm start seeds a study with."""
        import numpy as np

        from autopeft.search.pareto import pareto_front_mask
        from autopeft.space.encoding import config_key

        if not self.points:
            return []
        mask = pareto_front_mask(np.array([[-s, p] for s, p in self.points]))
        unique = {config_key(c): dict(c) for c, on in zip(self.configs, mask, strict=True) if on}
        return list(unique.values())

    def result(self) -> dict[str, Any]:
        """Events up to the budget, kept where the hypervolume changes (and the last one)."""
        inside = [e for e in self.events if e[0] <= self.budget + 1e-9]
        kept = [e for i, e in enumerate(inside) if i == 0 or e[1] != inside[i - 1][1] or i == len(inside) - 1]
        return {"events": [[round(c, 6), h, round(s, 4)] for c, h, s in kept],
                "final_hv": inside[-1][1], "compute": inside[-1][0], "seconds": inside[-1][2],
                "jobs": len(inside) - 1, "full_trials": len(self.points)}


# -- ours ---------------------------------------------------------------------------------------------

def run_ours(problem: Problem, method: str, seed: int, budget: float, *,
             warm: Sequence[Mapping[str, Any]] = (), keep_front: bool = False) -> dict[str, Any]:
    """One run of our ``method`` through the study loop.

    ``warm``: configurations proposed first, before the space's defaults, as `study run --warm-start` seeds
    a study with another study's front (`benchmarks/warm_start.py`); ``keep_front``: the result carries the
    run's front configurations (``front``) for such a seed.
    """
    from autopeft.engine.definition import StudyDefinition
    from autopeft.engine.executors import InProcessExecutor
    from autopeft.engine.loop import Budget, StudyLoop
    from autopeft.engine.strategy import StrategyOptions, make_sampler_for, make_scheduler
    from autopeft.engine.task import TrialOutcome, TrialTask
    from autopeft.space.encoding import config_key
    from autopeft.status import TrialStatus
    from autopeft.store import Store

    strategy, option_values = OUR_VARIANTS.get(method, (method, {}))
    options = StrategyOptions(**option_values)
    counter = getattr(problem, "counter", None)
    tracker = Tracker(problem, budget)
    reached: dict[int, int] = {}

    def runner(task: TrialTask) -> TrialOutcome:
        start = reached.get(task.number, 0)  # a promotion continues from the trial's last fidelity
        reached[task.number] = task.fidelity
        score, params = tracker.evaluate(task.config, start, task.fidelity, seed)
        return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity,
                            {"score": score, "trainable_params": params}, {})

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        definition = StudyDefinition(space={}, recipe={"fidelity": {"min": problem.min_fidelity,
                                                                    "max": problem.max_fidelity}},
                                     objectives=problem.objectives, recipe_dir=".")
        store.create_study("b", objectives=definition.objectives_json(), recipe=definition.recipe_json(),
                           strategy=strategy, seed=seed)
        unique: dict[Any, dict[str, Any]] = {}  # a warm front may hold a default: each configuration once
        for config in [*warm, *(problem.defaults if OURS_USE_DEFAULTS else ())]:
            unique.setdefault(config_key(config), dict(config))
        seeds = tuple(unique.values())
        sampler = make_sampler_for(strategy, problem.dims, problem.objectives, seed=seed, seeds=seeds,
                                   options=options,
                                   feasible=counter.feasible if counter is not None else problem.feasible,
                                   known={"trainable_params": counter.count if counter is not None
                                          else problem.params})

        def factory(propose: Any) -> Any:
            return make_scheduler(strategy, propose, problem.objectives, min_fidelity=problem.min_fidelity,
                                  max_fidelity=problem.max_fidelity, seed=seed, options=options, seeds=seeds)

        loop = StudyLoop(store=store, name="b", definition=definition, scheduler_factory=factory, sampler=sampler,
                         executor=InProcessExecutor(), runner=runner, compile_config=lambda c: None,
                         budget=Budget(trials=budget))
        summary = loop.run()
        store.close()
    out = tracker.result()
    if keep_front:
        out["front"] = tracker.front_configs()
    # The loop's own count of the budget agrees with ours (checked here, so a change in how promotions
    # are charged cannot silently skew the comparison).
    if abs(summary.budget_used - tracker.compute) > 1e-6:
        raise RuntimeError(f"{strategy}: the loop counted {summary.budget_used:.4f} full trials, "
                           f"the harness {tracker.compute:.4f}")
    return out


# -- peers --------------------------------------------------------------------------------------------

def _active(problem: Problem, values: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration a flat assignment means: the parameters active under it, in dimension order."""
    config: dict[str, Any] = {}
    for name, param in problem.dims.items():
        if param.active(config) and name in values:
            config[name] = values[name]
    return config


def _optuna_suggest(trial: Any, name: str, param: Param) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(name, list(param.choices))
    if param.int_range is not None:
        return trial.suggest_int(name, param.int_range[0], param.int_range[1], log=param.log)
    low, high = param.float_range  # type: ignore[misc]
    return trial.suggest_float(name, low, high, log=param.log)


def _optuna_sampler(method: str, seed: int, budget: float) -> tuple[Any, bool]:
    """(sampler, flat space?) of an Optuna peer at its strongest ordinary setting."""
    import optuna

    if method in ("optuna-gp", "optuna-gp-flat"):
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False), method == "optuna-gp-flat"
    if method == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True), False
    if method in ("optuna-nsga2", "optuna-nsga2-flat"):
        return (optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, int(budget) // 3)),
                method == "optuna-nsga2-flat")
    raise ValueError(method)


def run_optuna(problem: Problem, method: str, seed: int, budget: float) -> dict[str, Any]:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    tracker = Tracker(problem, budget)
    sampler, flat = _optuna_sampler(method, seed, budget)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    while not tracker.spent:
        trial = study.ask()
        if flat:
            values = {name: _optuna_suggest(trial, name, param) for name, param in problem.dims.items()}
            config = _active(problem, values)
        else:
            config = {}
            for name, param in problem.dims.items():
                if param.active(config):
                    config[name] = _optuna_suggest(trial, name, param)
        if not problem.feasible(config):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        score, params = tracker.evaluate(config, 0, problem.max_fidelity, seed)
        study.tell(trial, [score, params])
    return tracker.result()


def syne_tune_space(problem: Problem) -> dict[str, Any]:
    """The flat Syne Tune space of the problem's dimensions (Syne Tune spaces have no conditions)."""
    from syne_tune import config_space as cs

    space: dict[str, Any] = {}
    for name, param in problem.dims.items():
        if param.choices is not None:
            space[name] = cs.choice(list(param.choices))
        elif param.int_range is not None:
            ilow, ihigh = param.int_range
            space[name] = cs.lograndint(ilow, ihigh) if param.log else cs.randint(ilow, ihigh)
        else:
            low, high = param.float_range  # type: ignore[misc]
            space[name] = cs.loguniform(low, high) if param.log else cs.uniform(low, high)
    return space


def run_moasha(problem: Problem, seed: int, budget: float) -> dict[str, Any]:
    import datetime

    import numpy as np
    from syne_tune.backend.trial_status import Trial
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    np.random.seed(seed)  # MOASHA samples configurations and brackets from numpy's global generator
    random.seed(seed)
    steps = problem.report_fidelities
    unit = problem.min_fidelity
    scheduler = MOASHA(config_space=syne_tune_space(problem), metrics=["neg_score", "trainable_params"],
                       do_minimize=True, time_attr="step", max_t=round(problem.max_fidelity / unit),
                       grace_period=1, reduction_factor=problem.eta, random_seed=seed)
    tracker = Tracker(problem, budget)
    trial_id = 0
    while not tracker.spent:
        suggestion = scheduler.suggest()
        if suggestion is None:
            break
        config = _active(problem, suggestion.config)
        trial = Trial(trial_id=trial_id, config=suggestion.config, creation_time=datetime.datetime.now())
        trial_id += 1
        if not problem.feasible(config):
            scheduler.on_trial_add(trial)
            scheduler.on_trial_remove(trial)
            continue
        scheduler.on_trial_add(trial)
        previous = 0
        for fidelity in steps:
            if tracker.spent:
                break
            score, params = tracker.evaluate(config, previous, fidelity, seed)
            previous = fidelity
            result = {"step": fidelity / unit, "neg_score": -score, "trainable_params": params}
            if fidelity >= problem.max_fidelity:
                scheduler.on_trial_complete(trial, result)
                break
            if scheduler.on_trial_result(trial, result) == SchedulerDecision.STOP:
                break
    return tracker.result()


def run_random_search(problem: Problem, seed: int, budget: float) -> dict[str, Any]:
    rng = random.Random(seed)
    tracker = Tracker(problem, budget)
    while not tracker.spent:
        config = problem.sample(rng)
        if problem.feasible(config):
            tracker.evaluate(config, 0, problem.max_fidelity, seed)
    return tracker.result()


SETTINGS = {
    "optuna-gp": "GPSampler(seed) defaults (log-EHVI, 10 start-up trials, noisy); conditional space; "
                 "full fidelity",
    "optuna-gp-flat": "as optuna-gp over a flat space (every parameter in every trial): weaker",
    "optuna-nsga2-flat": "as optuna-nsga2 over a flat space: weaker",
    "optuna-tpe": "TPESampler(multivariate=True, group=True, seed), 10 start-up trials; conditional space; "
                  "full fidelity",
    "optuna-nsga2": "NSGAIISampler(population_size=budget/3, seed); conditional space; full fidelity",
    "syne-moasha": "MOASHA(non-dominated sort, grace period = lowest fidelity, reduction factor = eta, "
                   "1 bracket), one worker reporting at every ladder step; flat space",
    "random-search": "uniform random configurations at full fidelity",
}


def unavailable(method: str) -> str | None:
    """Why a method cannot run here (its package is missing), or None."""
    needs = {"syne-moasha": "syne_tune"}.get(method)
    if method.startswith("optuna-"):
        needs = "optuna"
    if needs is None:
        return None
    try:
        __import__(needs)
    except ImportError as err:
        return f"{needs} is not installed ({err}); pip install -c constraints.txt -e '.[bench]'"
    return None


def run_method(problem: Problem, method: str, seed: int, budget: float) -> dict[str, Any]:
    if method in OURS or method in OUR_VARIANTS:
        return run_ours(problem, method, seed, budget)
    if method.startswith("optuna-"):
        return run_optuna(problem, method, seed, budget)
    if method == "syne-moasha":
        return run_moasha(problem, seed, budget)
    if method == "random-search":
        return run_random_search(problem, seed, budget)
    raise ValueError(f"unknown method {method!r}; accepted: {', '.join(OURS + PEERS + VARIANTS)}")


# -- analysis -----------------------------------------------------------------------------------------

def hv_at(events: Sequence[Sequence[float]], compute: float) -> float:
    """The hypervolume of a run's front after ``compute`` full-trial equivalents."""
    hv = 0.0
    for c, h, *_ in events:
        if c > compute + 1e-9:
            break
        hv = h
    return hv


def first_reach(events: Sequence[Sequence[float]], target: float) -> tuple[float, float] | None:
    """(compute, seconds) of the first event whose hypervolume reaches ``target``; None if none does."""
    for c, h, s in events:
        if h >= target - 1e-12:
            return c, s
    return None


def median_or_none(values: Sequence[float]) -> float | None:
    """Median where a run that never reached counts as infinite; None when the median is infinite."""
    m = statistics.median(values)
    return None if math.isinf(m) else m


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    import numpy as np

    q = np.percentile(np.array(values, dtype=float), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def summarise(problem: Problem, budget: float, runs: dict[str, list[dict[str, Any]]],
              skipped: Mapping[str, str]) -> dict[str, Any]:
    """The problem's section of the report: per method figures, the target and the compute ratio."""
    import numpy as np

    grid = [budget * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
    methods: dict[str, dict[str, Any]] = {}
    for name, seeds in runs.items():
        finals = [hv_at(r["events"], budget) for r in seeds]
        q1, med, q3 = quartiles(finals)
        curves = np.array([[hv_at(r["events"], c) for c in grid] for r in seeds])
        methods[name] = {
            "kind": "ours" if name in OURS or name in OUR_VARIANTS else "peer",
            "setting": SETTINGS.get(name, "autopeft strategy through the study loop"),
            "final_hv_median": med, "final_hv_q25": q1, "final_hv_q75": q3,
            "final_hv_per_seed": finals,
            "jobs_median": statistics.median(r["jobs"] for r in seeds),
            "full_trials_median": statistics.median(r["full_trials"] for r in seeds),
            "method_seconds_median": statistics.median(r["seconds"] for r in seeds),
            "curve_median": np.percentile(curves, 50, axis=0).tolist(),
            "curve_q25": np.percentile(curves, 25, axis=0).tolist(),
            "curve_q75": np.percentile(curves, 75, axis=0).tolist(),
        }
    peers = [n for n in methods if methods[n]["kind"] == "peer"]
    ours = [n for n in methods if methods[n]["kind"] == "ours"]
    best_peer = max(peers, key=lambda n: methods[n]["final_hv_median"]) if peers else None
    target = methods[best_peer]["final_hv_median"] if best_peer else None
    for name, row in methods.items():
        if target is None:
            row.update(compute_to_target_median=None, compute_to_target_per_seed=None, reached_seeds=None,
                       wall_seconds_to_target_median=None)
            continue
        reach = [first_reach(r["events"], target) for r in runs[name]]
        computes = [x[0] if x else math.inf for x in reach]
        walls = [x[0] * problem.full_trial_seconds + x[1] if x else math.inf for x in reach]
        row.update(compute_to_target_median=median_or_none(computes),
                   compute_to_target_per_seed=[None if math.isinf(c) else c for c in computes],
                   reached_seeds=sum(1 for x in reach if x),
                   wall_seconds_to_target_median=median_or_none(walls))
    ratio = best_ours = default_ratio = None
    if target is not None and ours:
        reaching = [n for n in ours if methods[n]["compute_to_target_median"] is not None]
        if reaching:
            best_ours = min(reaching, key=lambda n: methods[n]["compute_to_target_median"])
            ratio = methods[best_ours]["compute_to_target_median"] / budget
        if DEFAULT_OURS in methods and methods[DEFAULT_OURS]["compute_to_target_median"] is not None:
            default_ratio = methods[DEFAULT_OURS]["compute_to_target_median"] / budget
    return {**problem.describe(), "budget_full_trials": budget, "grid": grid, "target_hv": target,
            "best_peer": best_peer, "best_peer_compute": budget if best_peer else None,
            "best_ours": best_ours, "compute_ratio_vs_best_peer": ratio,
            "compute_ratio_default_vs_best_peer": default_ratio, "skipped": dict(skipped),
            "methods": methods, "runs": {n: [r["events"] for r in seeds] for n, seeds in runs.items()},
            "run_stats": {n: [{k: r[k] for k in ("jobs", "full_trials", "seconds")} for r in seeds]
                          for n, seeds in runs.items()}}


def previous_runs(report: Mapping[str, Any], problem: str, budget: float,
                  seeds: int) -> dict[str, list[dict[str, Any]]]:
    """The runs of a problem in an earlier report (``--merge``), if it had the same budget and seeds."""
    if report["budget_full_trials"] != budget or report["seeds"] != seeds:
        raise SystemExit(f"--merge: the earlier report ran budget {report['budget_full_trials']} with "
                         f"{report['seeds']} seeds, not {budget} with {seeds}")
    for section in report["problems"]:
        if section["name"] == problem:
            return {n: [{**stats, "events": events} for events, stats in zip(section["runs"][n],
                                                                             section["run_stats"][n], strict=True)]
                    for n in section["runs"]}
    return {}


def plot(section: dict[str, Any], path: Path) -> str | None:
    """Anytime hypervolume curves (median and interquartile band per method); None if matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    grid = section["grid"]
    colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    for i, (name, row) in enumerate(section["methods"].items()):
        style = "-" if row["kind"] == "ours" else (":" if name in VARIANTS else "--")
        width = 2.4 if name == DEFAULT_OURS else 1.4
        (line,) = ax.plot(grid, row["curve_median"], style, lw=width, label=name, color=colours[2 * i % 20
                                                                                              + (i >= 10)])
        ax.fill_between(grid, row["curve_q25"], row["curve_q75"], color=line.get_color(), alpha=0.1)
    if section["target_hv"] is not None:
        ax.axhline(section["target_hv"], color="grey", lw=0.8, ls=":",
                   label=f"best peer's final ({section['best_peer']})")
    ratio = section["compute_ratio_vs_best_peer"]
    ax.set_title(f"{section['name']}: hypervolume of the full-fidelity front against compute "
                 f"(ratio vs best peer {ratio:.2f})" if ratio is not None else
                 f"{section['name']}: hypervolume of the full-fidelity front against compute")
    ax.set_xlabel("compute (full-fidelity trial equivalents)")
    ax.set_ylabel("hypervolume (share of the reference box)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# -- main ---------------------------------------------------------------------------------------------

def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "optuna", "botorch", "syne-tune", "matplotlib"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["autopeft_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                capture_output=True, text=True, check=False).stdout.strip() or None
    except OSError:
        out["autopeft_commit"] = None
    return out


_PROBLEM: Problem | None = None
#: Our strategies propose the space's defaults first, as a study does (`--no-defaults` measures without).
OURS_USE_DEFAULTS = True


def _work(args: tuple[str, str, int, float]) -> tuple[str, int, dict[str, Any]]:
    global _PROBLEM
    problem_name, method, seed, budget = args
    if _PROBLEM is None or _PROBLEM.name != problem_name:
        _PROBLEM = PROBLEMS[problem_name]()
    return method, seed, run_method(_PROBLEM, method, seed, budget)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=None, help="full-trial equivalents per run")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated (default: all of {OURS + PEERS}; also {VARIANTS})")
    parser.add_argument("--problems", default="synthetic", help=f"comma-separated of {list(PROBLEMS)}")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (timings share the CPU)")
    parser.add_argument("--no-defaults", action="store_true",
                        help="our strategies do not propose the space's defaults first (to measure what they add)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_efficiency.json")
    parser.add_argument("--merge", type=Path, default=None,
                        help="an earlier report (same budget and seeds): its runs of the methods not run now "
                             "are kept, so one method can be rerun without the rest")
    args = parser.parse_args(argv)
    global OURS_USE_DEFAULTS
    OURS_USE_DEFAULTS = not args.no_defaults
    budget = args.budget or (6.0 if args.quick else 30.0)  # quick: the 4 defaults at full fidelity, and 2 more
    seeds = args.seeds or (1 if args.quick else 10)
    names = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else OURS + PEERS)
    for name in names:
        if name not in OURS + PEERS + VARIANTS:
            parser.error(f"unknown method {name!r}; accepted: {', '.join(OURS + PEERS + VARIANTS)}")
    threads = int(os.environ.get("AUTOPEFT_BENCH_THREADS", "1"))
    at_start = versions()  # the commit the run started from
    import torch

    torch.set_num_threads(threads)
    skipped = {n: reason for n in names if (reason := unavailable(n))}
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", flush=True)
    names = [n for n in names if n not in skipped]
    out = args.out.with_name(args.out.stem + "_quick.json") if args.quick else args.out
    sections = []
    for problem_name in args.problems.split(","):
        started = time.perf_counter()
        # Interleaved: every method once per seed, then the next seed.
        work = [(problem_name, n, s, budget) for s in range(seeds) for n in names]
        runs: dict[str, list[dict[str, Any]]] = {n: [{}] * seeds for n in names}
        if args.jobs > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
                results = pool.imap_unordered(_work, work)
                for method, seed, result in results:
                    runs[method][seed] = result
                    print(f"{problem_name} seed {seed} {method:15s} final hv {result['final_hv']:.4g}  "
                          f"jobs {result['jobs']:4d}  full {result['full_trials']:3d}  "
                          f"own seconds {result['seconds']:.1f}", flush=True)
        else:
            for item in work:
                method, seed, result = _work(item)
                runs[method][seed] = result
                print(f"{problem_name} seed {seed} {method:15s} final hv {result['final_hv']:.4g}  "
                      f"jobs {result['jobs']:4d}  full {result['full_trials']:3d}  "
                      f"own seconds {result['seconds']:.1f}", flush=True)
        if args.merge is not None:
            earlier = previous_runs(json.loads(args.merge.read_text()), problem_name, budget, seeds)
            merged = {**{n: r for n, r in earlier.items() if n not in runs}, **runs}
            order = OURS + PEERS + VARIANTS
            runs = dict(sorted(merged.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99))
        problem = _PROBLEM if _PROBLEM is not None and _PROBLEM.name == problem_name else PROBLEMS[problem_name]()
        section = summarise(problem, budget, runs, skipped)
        section["seconds"] = time.perf_counter() - started
        png = out.with_name(f"{out.stem}_{problem_name}.png")
        section["figure"] = plot(section, png)
        if section["figure"] is not None:
            section["figure"] = os.path.relpath(section["figure"], ROOT) if png.is_relative_to(ROOT) else str(png)
        sections.append(section)
        print_table(section, seeds)
    report = {"benchmark": "search_efficiency", "quick": args.quick, "date": dt.date.today().isoformat(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
              "threads": threads, "jobs": args.jobs, "versions": at_start, "seeds": seeds,
              "ours_propose_defaults_first": OURS_USE_DEFAULTS,
              "budget_full_trials": budget, "methods": names, "skipped": skipped, "problems": sections,
              "merged_from": None if args.merge is None else {"path": str(args.merge), "kept_runs_of": sorted(
                  {n for sec in sections for n in sec["methods"]} - set(names))}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def print_table(section: dict[str, Any], seeds: int) -> None:
    def fmt(x: float | None, spec: str = ".1f") -> str:
        return "never" if x is None else format(x, spec)

    print(f"\n{section['name']}: budget {section['budget_full_trials']:g} full trials, {seeds} seed(s); "
          f"target = best peer's final hypervolume ({section['best_peer']}: {fmt(section['target_hv'], '.4g')})")
    print(f"{'method':24s} {'final hv median (IQR)':>30s} {'compute to target':>18s} {'reached':>8s} "
          f"{'wall s to target':>17s} {'jobs':>5s} {'full':>5s} {'own s':>7s}")
    for name, row in section["methods"].items():
        print(f"{name:24s} {row['final_hv_median']:10.4f} ({row['final_hv_q25']:.4f}-{row['final_hv_q75']:.4f}) "
              f"{fmt(row['compute_to_target_median']):>18s} {row['reached_seeds']!s:>8s} "
              f"{fmt(row['wall_seconds_to_target_median'], '.0f'):>17s} {row['jobs_median']:5.0f} "
              f"{row['full_trials_median']:5.0f} {row['method_seconds_median']:7.1f}")
    print(f"compute_ratio_vs_best_peer ({section['best_ours']}): {fmt(section['compute_ratio_vs_best_peer'], '.3f')}"
          f"   default ({DEFAULT_OURS}): {fmt(section['compute_ratio_default_vs_best_peer'], '.3f')}")


if __name__ == "__main__":
    raise SystemExit(main())
