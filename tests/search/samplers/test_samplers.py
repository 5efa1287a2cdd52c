"""One contract suite for every sampler (as Optuna's `pytest_samplers.py`), plus per-sampler checks.

Every sampler, on a small mixed conditional space (`synthetic`): proposals valid and feasible,
reproducible, distinct, never a pending or seen configuration, fewer only when the space runs out,
and a short loop improves the hypervolume over the first batch.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from autopeft.errors import ConfigError
from autopeft.search.history import History, Observation
from autopeft.search.pareto import Direction, Objective
from autopeft.search.samplers import SAMPLERS, MOBOSampler, RandomSampler, Sampler, make_sampler
from autopeft.space import SearchSpace
from autopeft.space.encoding import config_key
from tests.search.samplers.synthetic import (
    DIMS,
    OBJECTIVES,
    cost,
    evaluate,
    feasible,
    front_hypervolume,
    history_of,
)

#: Small settings so each test takes a second or two (MOBO: 6 random results, then BO on small pools).
OPTIONS: dict[str, dict[str, Any]] = {
    "random": {},
    "tpe": {"n_startup_trials": 4},
    "nsga2": {"population_size": 4},
    "mobo": {"min_points": 6, "pool_size": 96, "num_mutations": 64, "mc_samples": 32, "fit_maxiter": 30},
}
NAMES = sorted(SAMPLERS)


def _sampler(name: str, seed: int = 0, **extra: Any) -> Sampler:
    return make_sampler(name, DIMS, OBJECTIVES, seed=seed, feasible=feasible,
                        known={"trainable_params": cost}, **{**OPTIONS[name], **extra})


def _warm_history(n: int = 8, pending: tuple[Mapping[str, Any], ...] = ()) -> History:
    configs = RandomSampler(DIMS, OBJECTIVES, seed=123, feasible=feasible).propose(n, History())
    return history_of(configs, pending)


def _assert_valid(config: Mapping[str, Any]) -> None:
    assert set(config) <= set(DIMS)
    for name, param in DIMS.items():
        assert param.active(config) == (name in config), name
        if name in config:
            assert param.contains(config[name]), (name, config[name])
    assert feasible(config)


@pytest.mark.parametrize("name", NAMES)
def test_proposals_are_valid_feasible_and_distinct(name: str) -> None:
    for history in (History(), _warm_history()):
        batch = _sampler(name).propose(6, history)
        assert len(batch) == 6
        for config in batch:
            _assert_valid(config)
        assert len({config_key(c) for c in batch}) == 6


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_history_give_the_same_proposals(name: str) -> None:
    history = _warm_history()
    assert _sampler(name, seed=7).propose(4, history) == _sampler(name, seed=7).propose(4, history)
    assert _sampler(name, seed=7).propose(4, history) != _sampler(name, seed=8).propose(4, history)


@pytest.mark.parametrize("name", NAMES)
def test_the_key_order_of_stored_configurations_changes_no_proposal(name: str) -> None:
    """PostgreSQL's jsonb gives configurations back with their keys reordered (shorter first)."""
    history = _warm_history()

    def reordered(config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: config[k] for k in sorted(config, key=lambda k: (len(k), k), reverse=True)}

    stored = History(observations=tuple(Observation(o.trial, reordered(o.config), o.fidelity, o.objectives)
                                        for o in history.observations),
                     pending=tuple(reordered(c) for c in history.pending), num_trials=history.num_trials,
                     failed=tuple(reordered(c) for c in history.failed))
    assert [list(o.config) for o in stored.observations] != [list(o.config) for o in history.observations]
    assert _sampler(name, seed=5).propose(4, stored) == _sampler(name, seed=5).propose(4, history)


@pytest.mark.parametrize("name", NAMES)
def test_pending_seen_and_failed_configurations_are_not_proposed_again(name: str) -> None:
    base = _warm_history()
    first = _sampler(name).propose(3, base)
    failed = _sampler(name, seed=1).propose(2, base)
    history = History(base.observations, tuple(first), base.num_trials + 5, tuple(failed))
    batch = _sampler(name).propose(6, history)
    taken = {config_key(c) for c in [*first, *failed, *(o.config for o in base.observations)]}
    assert len(batch) == 6
    assert not taken & {config_key(c) for c in batch}


@pytest.mark.parametrize("name", NAMES)
def test_a_short_loop_improves_the_hypervolume_of_its_first_batch(name: str) -> None:
    sampler = _sampler(name, seed=3)
    configs: list[Mapping[str, Any]] = []
    for _ in range(4):
        batch = sampler.propose(4, history_of(configs))
        assert len(batch) == 4
        configs += batch
    first = front_hypervolume(configs[:4])
    assert front_hypervolume(configs) > first > 0


TINY = SearchSpace.model_validate({
    "name": "tiny",
    "layers": {"method": {"choices": ["none", "lora"]}, "rank": {"choices": [2, 4], "when": {"method": ["lora"]}}},
    "searched_layers": "0",
    "plan": [{"method": "lora", "r": "$rank", "when": {"method": ["lora"]}}],
})


@pytest.mark.parametrize("name", NAMES)
def test_an_exhausted_space_gives_fewer_configurations(name: str) -> None:
    dims = TINY.dimensions(1)  # three configurations: none, lora r2, lora r4
    objectives = (Objective("score", Direction.MAXIMIZE, 0.0),)
    options: dict[str, Any] = {"min_points": 2} if name == "mobo" else {}
    sampler = make_sampler(name, dims, objectives, seed=0, **options)
    observed: list[dict[str, Any]] = [{"layer_0.method": "none"}, {"layer_0.method": "lora", "layer_0.rank": 2}]
    history = History(tuple(Observation(i, c, 1, {"score": 0.1 * i + 0.1}) for i, c in enumerate(observed)), (), 2)
    assert sampler.propose(3, history) == [{"layer_0.method": "lora", "layer_0.rank": 4}]
    full = History(history.observations, ({"layer_0.method": "lora", "layer_0.rank": 4},), 3)
    assert sampler.propose(2, full) == []


def test_random_continues_its_sequence_across_calls() -> None:
    sampler = _sampler("random")
    first = sampler.propose(4, History())
    second = sampler.propose(4, History(pending=tuple(first), num_trials=4))
    assert not {config_key(c) for c in first} & {config_key(c) for c in second}
    assert sampler.propose(4, History()) == first


def test_infeasible_draws_are_rejected() -> None:
    sampler = make_sampler("random", DIMS, OBJECTIVES, seed=0, feasible=lambda c: cost(c) <= 1_000)
    batch = sampler.propose(5, History())
    assert len(batch) == 5 and all(cost(c) <= 1_000 for c in batch)
    assert make_sampler("random", DIMS, OBJECTIVES, feasible=lambda c: False, max_tries=4).propose(3, History()) == []


def test_mobo_uses_the_known_objective() -> None:
    """With a constant score only the exact cost separates configurations: MOBO goes for cheaper ones."""

    def constant_score(config: Mapping[str, Any]) -> dict[str, float]:
        return {"score": 0.5, "trainable_params": cost(config)}

    configs = RandomSampler(DIMS, OBJECTIVES, seed=11, feasible=feasible).propose(8, History())
    history = history_of(configs, evaluate_fn=constant_score)
    mobo = _sampler("mobo").propose(4, history)
    random_batch = _sampler("random").propose(4, history)
    cheapest_seen = min(cost(c) for c in configs)
    assert cost(mobo[0]) < cheapest_seen
    assert np.mean([cost(c) for c in mobo]) < np.mean([cost(c) for c in random_batch])


def test_mobo_with_two_learned_objectives_and_a_known_one() -> None:
    objectives = (*OBJECTIVES, Objective("seconds", Direction.MINIMIZE, 100.0))
    history = history_of(RandomSampler(DIMS, objectives, seed=5, feasible=feasible).propose(8, History()),
                         evaluate_fn=lambda c: {**evaluate(c), "seconds": 1.0 + evaluate(c)["score"] * 10})
    sampler = make_sampler("mobo", DIMS, objectives, seed=0, feasible=feasible, known={"trainable_params": cost},
                           **OPTIONS["mobo"])
    batch = sampler.propose(3, history)
    assert len({config_key(c) for c in batch}) == 3
    for config in batch:
        _assert_valid(config)


def test_mobo_proposes_at_random_until_min_points() -> None:
    history = _warm_history(5)
    assert _sampler("mobo").propose(3, history) == _sampler("random").propose(3, history)
    assert isinstance(_sampler("mobo"), MOBOSampler)


@pytest.mark.parametrize("name", NAMES)
def test_single_objective_studies_work(name: str) -> None:
    objectives = (Objective("score", Direction.MAXIMIZE, 0.0),)
    options = {k: v for k, v in OPTIONS[name].items() if k != "population_size"}
    sampler = make_sampler(name, DIMS, objectives, seed=0, feasible=feasible, **options)
    batch = sampler.propose(3, _warm_history())
    assert len(batch) == 3
    for config in batch:
        _assert_valid(config)


def test_results_at_several_fidelities_use_the_highest_reached() -> None:
    history = _warm_history()
    extra = tuple(Observation(o.trial, o.config, 3, {**o.objectives, "score": o.objectives["score"] + 0.1})
                  for o in history.observations[:6])
    layered = History(history.observations + extra, (), history.num_trials)
    for name in NAMES:
        batch = _sampler(name).propose(3, layered)
        assert len(batch) == 3 and all(feasible(c) for c in batch)


def test_multi_fidelity_mobo_models_every_rung_together() -> None:
    """Four results at a low rung and two at a high one: no rung has min_points (6), so plain MOBO waits
    (random proposals); the multi-fidelity model fits all six, the fidelity as an input, and proposes."""
    configs = RandomSampler(DIMS, OBJECTIVES, seed=123, feasible=feasible).propose(6, History())
    observations = tuple(Observation(i, c, 1 if i < 4 else 3, evaluate(c)) for i, c in enumerate(configs))
    history = History(observations, (), len(configs))
    random_batch = _sampler("random").propose(3, history)
    assert _sampler("mobo").propose(3, history) == random_batch
    batch = _sampler("mobo", multi_fidelity=True).propose(3, history)
    assert batch != random_batch and len({config_key(c) for c in batch}) == 3
    assert not {config_key(c) for c in batch} & {config_key(c) for c in configs}
    for config in batch:
        _assert_valid(config)
    # With a known cost and a constant score, only the cost separates configurations: it still goes cheap.
    flat = History(tuple(Observation(o.trial, o.config, o.fidelity, {"score": 0.5, "trainable_params":
                                                                     cost(o.config)}) for o in observations),
                   (), len(configs))
    cheap = _sampler("mobo", multi_fidelity=True).propose(2, flat)
    assert cost(cheap[0]) < min(cost(c) for c in configs)

def test_mobo_can_count_stopped_trials_at_their_last_score() -> None:
    """Five trials started at rung 1 (one promoted to 9, one to 3), one started at rung 3, one running: no rung
    has min_points (6), so plain MOBO waits; with `stopped_at_last_score` the stopped trials join the top
    rung's result at their last score (the running one does not), six in all, and the model proposes."""
    configs = RandomSampler(DIMS, OBJECTIVES, seed=123, feasible=feasible).propose(7, History())

    def seen(trial: int, fidelity: int) -> Observation:
        return Observation(trial, configs[trial], fidelity, evaluate(configs[trial]))

    observations = (*(seen(i, 1) for i in range(5)), seen(0, 3), seen(6, 3), seen(0, 9), seen(1, 3))
    history = History(observations, (configs[5],), len(configs))
    merged = MOBOSampler._with_stopped(history, 9)
    assert sorted((o.trial, o.fidelity) for o in merged) == [(i, 9) for i in (0, 1, 2, 3, 4, 6)]
    random_batch = _sampler("random").propose(3, history)
    assert _sampler("mobo").propose(3, history) == random_batch
    batch = _sampler("mobo", stopped_at_last_score=True).propose(3, history)
    assert batch != random_batch and len({config_key(c) for c in batch}) == 3
    assert not {config_key(c) for c in batch} & {config_key(c) for c in configs}


def test_unknown_sampler_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="random, tpe, nsga2, mobo") as info:
        make_sampler("cmaes", DIMS, OBJECTIVES)
    assert info.value.field == "strategy"
    with pytest.raises(ConfigError, match="population"):
        make_sampler("random", DIMS, OBJECTIVES, population_size=3)


def test_evaluate_is_consistent() -> None:
    config = RandomSampler(DIMS, OBJECTIVES, seed=0).propose(1, History())[0]
    assert evaluate(config)["trainable_params"] == cost(config)


def test_importing_the_samplers_imports_no_torch_optuna_or_botorch() -> None:
    code = ("import sys, autopeft.search.samplers; "
            "print(sorted({'torch', 'optuna', 'botorch', 'scipy.stats'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
