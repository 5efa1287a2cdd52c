"""The peers of `benchmarks/search_efficiency.py`, each at its strongest ordinary setting, on a `Problem`.

Optuna's samplers (ask and tell), Syne Tune's MOASHA (driven as its `Tuner` drives it with one worker) and
random search; each charges its training to a `Tracker`, as our strategies' runs do.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.space.params import Param  # noqa: E402
from benchmarks.search_problem import Problem, Tracker  # noqa: E402


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
