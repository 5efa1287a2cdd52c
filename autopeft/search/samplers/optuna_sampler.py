"""TPE and NSGA-II through Optuna's ask-and-tell interface, rebuilt from the history on every call.

Each call creates an in-memory Optuna study, adds every finished trial (its latest result at the
highest fidelity it reached) with `optuna.trial.create_trial` + `Study.add_trial`, adds pending
configurations as RUNNING trials (TPE's ``constant_liar`` then treats them as bad, so it steers away
from them), and asks. Parameters are suggested define-by-run: only active ones, in dimension order,
so conditional parameters exist only where their parent allows. Categorical values (which may be
lists) go through their indices; increasing numeric choices become an integer index so TPE and the
NSGA-II crossover see their order. An ask that is infeasible or repeats a seen configuration is told
as FAIL and asked again (bounded); the rest of the batch then comes from the `RandomSampler`.

NSGA-II keeps its generations in trial system attributes; rebuilt trials get them from their order
(``population_size`` finished trials per generation), which is what Optuna would have recorded.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from autopeft.search.history import Config, History
from autopeft.search.pareto import Objective
from autopeft.search.samplers.base import Feasible, KnownObjective, Sampler
from autopeft.search.samplers.common import (
    derive_seed,
    latest_per_trial,
    objective_values,
    seen_keys,
    with_pending,
)
from autopeft.search.samplers.random import RandomSampler
from autopeft.space.encoding import SpaceEncoder, choice_index, config_key
from autopeft.space.params import Param

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-study INFO lines and experimental-feature warnings for one call."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def optuna_distribution(param: Param, *, ordinal: bool) -> Any:
    """The Optuna distribution of one parameter: choices by index (an ordered integer when ``ordinal``,
    i.e. increasing numeric choices), int and float ranges as they are."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.choices is not None:
        if ordinal:
            return IntDistribution(0, len(param.choices) - 1)
        return CategoricalDistribution(list(range(len(param.choices))))
    if param.int_range is not None:
        return IntDistribution(param.int_range[0], param.int_range[1], log=param.log)
    low, high = param.float_range  # type: ignore[misc]
    return FloatDistribution(low, high, log=param.log)


def optuna_params(encoder: SpaceEncoder, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Optuna params and distributions of a configuration over ``encoder``'s dimensions (choices as their
    index), or None if it does not fit them. Shared by the samplers and the dashboard's importance."""
    if not encoder.is_valid(config):
        return None
    ordinal = {c.name for c in encoder.columns if c.kind == "ordinal"}
    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}
    for name, param in encoder.dims.items():  # dimension order, not the stored mapping's
        if name not in config:
            continue
        value = config[name]
        dists[name] = optuna_distribution(param, ordinal=name in ordinal)
        params[name] = choice_index(param, value) if param.choices is not None else value
    return params, dists


class OptunaSampler(Sampler):
    """Shared ask-and-tell loop; subclasses build the Optuna sampler (`_optuna_sampler`)."""

    def __init__(self, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None,
                 max_asks: int = 16) -> None:
        super().__init__(dims, objectives, seed=seed, feasible=feasible, known=known)
        self.encoder = SpaceEncoder(self.dims)
        self._ordinal = {c.name for c in self.encoder.columns if c.kind == "ordinal"}
        self.max_asks = max(1, int(max_asks))
        self._fallback = RandomSampler(dims, objectives, seed=seed, feasible=feasible, known=known)

    @abc.abstractmethod
    def _optuna_sampler(self, seed: int) -> Any:
        """The Optuna sampler for one call, seeded from the sampler seed and the history size."""

    def propose(self, n: int, history: History) -> list[Config]:
        if n <= 0:
            return []
        import optuna

        out: list[Config] = []
        with quiet_optuna():
            study = optuna.create_study(
                directions=[o.direction.value for o in self.objectives],
                sampler=self._optuna_sampler(derive_seed(self.seed, history.num_trials)),
            )
            self._add_history(study, history)
            seen = seen_keys(history)
            for _ in range(self.max_asks * n):
                if len(out) == n:
                    break
                trial = study.ask()
                config = self._suggest(trial)
                key = config_key(config)
                if key in seen or not self.feasible(config):
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    continue
                seen.add(key)
                out.append(config)  # left RUNNING: the next asks of this batch see it as pending
        if len(out) < n:
            logger.info("%s: %d of %d asks were new and feasible; the rest from random",
                        type(self).__name__, len(out), n)
            out += self._fallback.propose(n - len(out), with_pending(history, out))
        return out

    # -- define-by-run ------------------------------------------------------------------------------
    def _suggest(self, trial: Any) -> Config:
        """Suggest the active parameters in dimension order; categoricals by index."""
        config: Config = {}
        for name, param in self.dims.items():
            if not param.active(config):
                continue
            dist = self._distribution(name, param)
            value = self._suggest_one(trial, name, dist)
            config[name] = param.choices[int(value)] if param.choices is not None else value
        return config

    @staticmethod
    def _suggest_one(trial: Any, name: str, dist: Any) -> Any:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        if isinstance(dist, CategoricalDistribution):
            return trial.suggest_categorical(name, list(dist.choices))
        if isinstance(dist, IntDistribution):
            return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)

    def _distribution(self, name: str, param: Param) -> Any:
        return optuna_distribution(param, ordinal=name in self._ordinal)

    # -- history -> trials ---------------------------------------------------------------------------
    def _params(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        return optuna_params(self.encoder, config)

    def _trial_system_attrs(self, index: int) -> dict[str, Any]:
        """System attributes of the ``index``-th finished trial (hook for NSGA-II generations)."""
        return {}

    def _add_history(self, study: Any, history: History) -> None:
        import optuna

        finished = 0
        for obs in latest_per_trial(history):
            values = objective_values(obs, self.objectives)
            fitted = self._params(obs.config)
            if values is None or fitted is None:
                continue
            params, dists = fitted
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists, values=values,
                system_attrs=self._trial_system_attrs(finished)))
            finished += 1
        for config in history.pending:
            fitted = self._params(config)
            if fitted is not None:
                study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.RUNNING, params=fitted[0], distributions=fitted[1]))


class TPESampler(OptunaSampler):
    """Optuna's (multi-objective) TPE: multivariate and grouped, which suits conditional spaces."""

    def __init__(self, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None,
                 n_startup_trials: int = 10, multivariate: bool = True, max_asks: int = 16) -> None:
        super().__init__(dims, objectives, seed=seed, feasible=feasible, known=known, max_asks=max_asks)
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate

    def _optuna_sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate,
            group=self.multivariate, constant_liar=True)


class NSGA2Sampler(OptunaSampler):
    """Optuna's NSGA-II; a small population by default, since studies here run tens of trials."""

    def __init__(self, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None,
                 population_size: int = 8, crossover_prob: float = 0.9, max_asks: int = 16) -> None:
        super().__init__(dims, objectives, seed=seed, feasible=feasible, known=known, max_asks=max_asks)
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2, got {population_size}")
        self.population_size = population_size
        self.crossover_prob = crossover_prob

    def _optuna_sampler(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=self.population_size, crossover_prob=self.crossover_prob)

    def _trial_system_attrs(self, index: int) -> dict[str, Any]:
        import optuna

        # The key under which Optuna records a trial's generation (a documented-by-code classmethod).
        key = optuna.samplers.NSGAIISampler._get_generation_key()
        return {key: index // self.population_size}

