"""`SeededSampler`: the given configurations first, in order, each once, then the wrapped sampler's."""

from __future__ import annotations

from typing import Any

from autopeft.search.history import History, Observation
from autopeft.search.samplers import RandomSampler, SeededSampler
from autopeft.space.encoding import config_key
from tests.search.samplers.synthetic import DIMS, OBJECTIVES, evaluate, feasible


def _config(method: str, **values: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"learning_rate": 1e-3}
    for i in range(4):
        config[f"layer_{i}.method"] = method
        config.update({f"layer_{i}.{k}": v for k, v in values.items()})
    return config


LORA = _config("lora", rank=8, roles=["query", "value"])
HEAD = _config("none")
ADAPTER = _config("adapter", size=16)
TOO_BIG = _config("lora", rank=32, roles=["query", "key", "value", "attn_output"])  # over MAX_COST


def _sampler(*seeds: dict[str, Any]) -> SeededSampler:
    return SeededSampler(RandomSampler(DIMS, OBJECTIVES, seed=0, feasible=feasible), seeds)


def test_seeds_come_first_in_order_then_the_wrapped_samplers_proposals() -> None:
    proposals = _sampler(LORA, HEAD, ADAPTER).propose(5, History())
    assert proposals[:3] == [LORA, HEAD, ADAPTER]
    assert len({config_key(c) for c in proposals}) == 5 and all(feasible(c) for c in proposals)


def test_a_seed_in_the_history_is_not_proposed_again() -> None:
    sampler = _sampler(LORA, HEAD, ADAPTER)
    observed = History((Observation(0, LORA, 1, evaluate(LORA)),), pending=(HEAD,), num_trials=2, failed=(ADAPTER,))
    proposals = sampler.propose(2, observed)
    assert {config_key(c) for c in proposals}.isdisjoint({config_key(c) for c in (LORA, HEAD, ADAPTER)})
    assert sampler.waiting(History((Observation(0, dict(reversed(LORA.items())), 1, {}),))) == [HEAD, ADAPTER]


def test_fewer_than_the_seeds_asked_for_takes_them_in_order() -> None:
    sampler = _sampler(LORA, HEAD, ADAPTER)
    assert sampler.propose(1, History()) == [LORA]
    assert sampler.cheap_propose(2, History(pending=(LORA,), num_trials=1)) == [HEAD, ADAPTER]


def test_an_infeasible_seed_is_never_proposed() -> None:
    assert not feasible(TOO_BIG)
    proposals = _sampler(TOO_BIG, HEAD).propose(3, History())
    assert proposals[0] == HEAD and TOO_BIG not in proposals


def test_it_is_as_slow_as_the_sampler_it_wraps() -> None:
    from autopeft.search.samplers import MOBOSampler

    assert _sampler(HEAD).slow is False
    assert SeededSampler(MOBOSampler(DIMS, OBJECTIVES, seed=0), [HEAD]).slow is True
