"""The `peft_expressible` constraint: every sampler proposes only plans that Hugging Face `peft` can hold,
judged by the exporter's own check; `lora_peft.yaml` yields nothing else on BERT-like models.

Feasibility comes from `ParamCounter.feasible` on a tiny BERT (meta device), as in a study.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from autopeft.export.peft_format import to_peft_config
from autopeft.peft import PeftPlan, apply_plan
from autopeft.search.history import History
from autopeft.search.pareto import Direction, Objective
from autopeft.search.samplers import make_sampler
from autopeft.space import Constraint, SearchSpace, load_space
from autopeft.train.counting import ParamCounter
from tests.conftest import TINY_MODELS

SPACES = Path(__file__).resolve().parents[3] / "search_spaces"
LAYERS = 6
OBJECTIVES = (Objective("score", Direction.MAXIMIZE, 0.0), Objective("trainable_params", Direction.MINIMIZE, 1e6))


def _counter(space: SearchSpace, arch: str = "bert") -> ParamCounter:
    with torch.device("meta"):
        model = TINY_MODELS[arch](num_labels=2, layers=LAYERS)
    return ParamCounter(model, space)


def _expressible(counter: ParamCounter, config: dict[str, Any]) -> bool:
    """What `autopeft export` decides: the peft config of the compiled plan on the model."""
    plan = PeftPlan.from_selectors(counter.space.compile(config, LAYERS).plan, LAYERS)
    return to_peft_config(plan, counter._model).expressible


def _mixed(*, peft: bool) -> SearchSpace:
    """The mixed space in its top two layers (so that a fair share of it is expressible)."""
    space = load_space(SPACES / "mixed.yaml")
    constraints = (Constraint(peft_expressible=True),) if peft else ()
    return space.model_copy(update={"searched_layers": "4-5", "constraints": constraints})


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_every_configuration_of_lora_peft_is_expressible(arch: str) -> None:
    space = load_space(SPACES / "lora_peft.yaml")
    counter = _counter(space, arch)
    rng = random.Random(0)
    for _ in range(200):
        config = space.sample(LAYERS, rng)
        assert counter.peft_reasons(config) == []
    assert _expressible(counter, config)


def test_on_gpt2_the_constraint_rejects_part_of_the_fused_projection() -> None:
    """GPT-2's query, key and value are one module: LoRA on two of them is not a peft adapter."""
    space = load_space(SPACES / "lora_peft.yaml")
    counter = _counter(space, "gpt2")
    config = space.sample(LAYERS, random.Random(0))
    config |= {f"layer_{i}.roles": ["query", "value"] for i in range(LAYERS)}
    reasons = counter.peft_reasons(config)
    assert reasons and "fused projection" in reasons[0] and not counter.feasible(config)


@pytest.mark.parametrize("strategy", ["random", "tpe", "nsga2"])
def test_with_the_constraint_a_mixed_space_gets_only_expressible_proposals(strategy: str) -> None:
    counter = _counter(_mixed(peft=True))
    dims = counter.space.dimensions(LAYERS)
    sampler = make_sampler(strategy, dims, OBJECTIVES, seed=1, feasible=counter.feasible)
    proposals = sampler.propose(8, History())
    assert len(proposals) == 8
    for config in proposals:
        assert counter.peft_reasons(config) == [] and _expressible(counter, config)


def test_without_the_constraint_the_same_sampler_proposes_plans_peft_cannot_hold() -> None:
    counter = _counter(_mixed(peft=False))
    sampler = make_sampler("random", counter.space.dimensions(LAYERS), OBJECTIVES, seed=1, feasible=counter.feasible)
    assert any(counter.peft_reasons(c) for c in sampler.propose(8, History()))


def test_shared_parameters_count_exactly() -> None:
    """The counter reads a shared parameter (`variant`) in every layer, as `compile` does."""
    space = load_space(SPACES / "lora_peft.yaml")
    counter = _counter(space)
    rng = random.Random(1)
    for _ in range(5):
        config = space.sample(LAYERS, rng)
        plan = PeftPlan.from_selectors(space.compile(config, LAYERS).plan, LAYERS)
        with torch.device("meta"):
            model = TINY_MODELS["bert"](num_labels=2, layers=LAYERS)
        assert counter.count(config) == apply_plan(model, plan).trainable_params
    low, high = counter.bounds()
    assert low < high and counter.feasible(counter.bound_configs()[0])
