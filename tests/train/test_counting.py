"""`ParamCounter`: exact counts against `apply_plan` on a full meta model, for every shipped space on tiny
BERT, GPT-2 and Llama; bounds that bracket and are attained; constraints; the recipe path."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from autopeft.errors import ConfigError
from autopeft.peft import PeftPlan, apply_plan
from autopeft.space import enumeration
from autopeft.space.space import SearchSpace, load_space
from autopeft.train.counting import ParamCounter, task_num_labels
from autopeft.train.recipe import TrialRecipe
from autopeft.train.tasks.spec import TaskSpec
from tests.conftest import TINY_MODELS, tiny_recipe_dict

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
SPACE_NAMES = ("quickstart", "lora", "mixed", "autopeft")
LAYERS = 6  # quickstart searches layers 3-5


def _meta(arch: str, num_labels: int = 3) -> nn.Module:
    with torch.device("meta"):
        return TINY_MODELS[arch](num_labels=num_labels, layers=LAYERS)


def _reference(arch: str, space: SearchSpace, config: dict[str, Any]) -> int:
    """What a trial would report: compile, expand, apply to a fresh full model."""
    trial = space.compile(config, LAYERS)
    plan = PeftPlan.from_selectors(trial.plan, LAYERS)
    return apply_plan(_meta(arch), plan).trainable_params


@pytest.mark.parametrize("arch", sorted(TINY_MODELS))
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_count_equals_apply_plan(arch: str, name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    counter = ParamCounter(_meta(arch), space)
    assert counter.num_layers == LAYERS
    assert counter.base_params == sum(p.numel() for p in _meta(arch).parameters())
    rng = random.Random(hash((arch, name)) % 1000)
    for _ in range(12):
        config = space.sample(LAYERS, rng)
        assert counter.count(config) == _reference(arch, space, config), config
        assert counter.count(config) == _reference(arch, space, config)  # warm: from the cache


@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_bounds_bracket_samples_and_are_attained(arch: str, name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    counter = ParamCounter(_meta(arch), space)
    low, high = counter.bounds()
    assert counter.bounds_exact
    rng = random.Random(1)
    for _ in range(200):
        assert low <= counter.count(space.sample(LAYERS, rng)) <= high
    low_config, high_config = counter.bound_configs()
    assert _reference(arch, space, low_config) == low
    assert _reference(arch, space, high_config) == high
    assert low == counter.head_params  # every shipped space can switch every adapter off


def _all_configs(space: SearchSpace) -> list[dict[str, Any]]:
    """Every configuration of a space with choices only (small spaces)."""
    dims = space.dimensions(LAYERS)
    configs: list[dict[str, Any]] = [{}]
    for name, param in dims.items():
        assert param.choices is not None
        grown = []
        for config in configs:
            if param.active(config):
                grown += [{**config, name: v} for v in param.choices]
            else:
                grown.append(config)
        configs = grown
    return configs


def _quickstart_with(limit: dict[str, Any]) -> SearchSpace:
    """The quickstart space with one learning rate and a constraint (small enough to enumerate)."""
    return SearchSpace.model_validate({
        "name": "small",
        "training": {"learning_rate": {"choices": [1.0e-3]}},
        "searched_layers": "3-5",
        "layers": {
            "method": {"choices": ["none", "lora", "parallel_adapter"]},
            "rank": {"choices": [2, 8], "when": {"method": ["lora"]}},
            "size": {"choices": [16, 64], "when": {"method": ["parallel_adapter"]}},
        },
        "plan": [
            {"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}},
            {"method": "parallel_adapter", "size": "$size", "when": {"method": ["parallel_adapter"]}},
        ],
        "constraints": [limit],
    })


def test_feasible_bounds_match_brute_force() -> None:
    unconstrained = ParamCounter(_meta("bert"), _quickstart_with({"max_trainable_params": 10**9}))
    counts = sorted({unconstrained.count(c) for c in _all_configs(unconstrained.space)})
    limit = counts[len(counts) // 2] - 1  # between two reachable totals
    for rule in ({"max_trainable_params": limit}, {"max_trainable_share": limit / unconstrained.base_params}):
        counter = ParamCounter(_meta("bert"), _quickstart_with(rule))
        configs = _all_configs(counter.space)
        allowed = [counter.count(c) for c in configs if counter.feasible(c)]
        assert all(counter.count(c) <= limit for c in configs if counter.feasible(c))
        assert all(counter.count(c) > limit for c in configs if not counter.feasible(c))
        assert counter.feasible_bounds() == (min(allowed), max(allowed))
        assert counter.bounds() == (counts[0], counts[-1])


def test_feasible_for_the_shipped_lora_constraint() -> None:
    space = load_space(SPACES / "lora.yaml")  # at most 2% of the model trains
    counter = ParamCounter(_meta("bert"), space)
    counter.warm()
    rng = random.Random(2)
    seen = {True: 0, False: 0}
    for _ in range(300):
        config = space.sample(LAYERS, rng)
        n = counter.count(config)
        ok = counter.feasible(config)
        assert ok == (n / counter.base_params <= 0.02)
        assert counter.share(config) == n / counter.base_params
        seen[ok] += 1
    assert seen[True] and seen[False]
    bounds = counter.feasible_bounds()
    assert bounds is not None and bounds[1] is not None
    limit = counter.max_allowed()
    assert limit is not None and counter.allows(limit) and not counter.allows(limit + 1)
    assert bounds[1] <= limit
    assert bounds[1] < counter.bounds()[1]


def test_no_feasible_configuration() -> None:
    counter = ParamCounter(_meta("bert"), _quickstart_with({"max_trainable_params": 1}))  # below the head
    assert counter.feasible_bounds() is None
    assert not counter.feasible({"learning_rate": 1.0e-3, "layer_3.method": "none", "layer_4.method": "none",
                                 "layer_5.method": "none"})


def test_grid_bounds_when_a_layer_has_too_many_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enumeration, "MAX_LOCAL_CONFIGS", 50)
    space = load_space(SPACES / "mixed.yaml")
    counter = ParamCounter(_meta("bert"), space)
    low, high = counter.bounds()
    assert not counter.bounds_exact
    exact = ParamCounter(_meta("bert"), space).bounds()
    assert exact[0] <= low <= high <= exact[1]


def test_bad_values_name_the_field() -> None:
    space = load_space(SPACES / "lora.yaml")
    counter = ParamCounter(_meta("bert"), space, source="lora.yaml")
    config = space.sample(LAYERS, random.Random(0)) | {"layer_2.method": "lora", "layer_2.rank": 3,
                                                        "layer_2.alpha": 8, "layer_2.roles": ["query", "value"]}
    with pytest.raises(ConfigError, match=r"lora.yaml: layer_2.rank: 3 is not one of"):
        counter.count(config)
    del config["layer_2.rank"]
    with pytest.raises(ConfigError, match=r"layer_2.rank: missing"):
        counter.count(config)


@pytest.mark.parametrize("factory", [TINY_MODELS["gpt2"], TINY_MODELS["llama"]])
def test_a_counter_never_materialises_weights(factory: Callable[..., nn.Module]) -> None:
    with torch.device("meta"):
        model = factory(layers=LAYERS)
    space = load_space(SPACES / "autopeft.yaml")
    counter = ParamCounter(model, space)
    counter.bounds()
    assert all(p.device.type == "meta" for p in model.parameters())


def test_for_recipe_matches_the_loaded_model(tiny_model_dir: Path) -> None:
    from autopeft.train.model import load_model

    recipe = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir))
    space = load_space(SPACES / "mixed.yaml")
    counter = ParamCounter.for_recipe(recipe, space)
    assert counter.num_layers == 3
    rng = random.Random(3)
    for config in itertools.islice(iter(lambda: space.sample(3, rng), None), 4):
        model = load_model(recipe.model, 2, base_dir=recipe.base_dir)
        plan = PeftPlan.from_selectors(space.compile(config, 3).plan, 3)
        info = apply_plan(model, plan)
        assert (counter.count(config), counter.base_params) == (info.trainable_params, info.base_params)


def test_searched_layers_beyond_the_model(tiny_model_dir: Path) -> None:
    recipe = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir))
    with pytest.raises(ConfigError, match=r"quickstart.yaml: searched_layers"):
        ParamCounter.for_recipe(recipe, load_space(SPACES / "quickstart.yaml"), source="quickstart.yaml")


@pytest.mark.parametrize(("task", "labels"), [
    ({"name": "demo"}, 2), ({"name": "stsb"}, 1), ({"name": "rte"}, 2),
    ({"name": "files", "train": "x.csv", "text_columns": ["t"], "label_column": "l", "labels": [0, 1, 2]}, 3),
])
def test_num_labels_without_reading_data(task: dict[str, Any], labels: int) -> None:
    assert task_num_labels(TaskSpec.model_validate(task)) == labels


def test_layers_of_different_shapes_are_counted_apart() -> None:
    """A layer with a wider feed-forward block gets its own cache entries (grouped by structure)."""
    model = _meta("bert")
    with torch.device("meta"):
        layer = model.bert.encoder.layer[2]
        layer.intermediate.dense = nn.Linear(32, 80)
        layer.output.dense = nn.Linear(80, 32)
    space = load_space(SPACES / "autopeft.yaml")
    counter = ParamCounter(model, space)
    rng = random.Random(4)
    for _ in range(10):
        config = space.sample(LAYERS, rng)
        reference = _meta("bert")
        with torch.device("meta"):
            wide = reference.bert.encoder.layer[2]
            wide.intermediate.dense = nn.Linear(32, 80)
            wide.output.dense = nn.Linear(80, 32)
        plan = PeftPlan.from_selectors(space.compile(config, LAYERS).plan, LAYERS)
        assert counter.count(config) == apply_plan(reference, plan).trainable_params
    lora = ParamCounter(model, load_space(SPACES / "lora.yaml"))
    off = {"learning_rate": 1e-3, "lr_schedule": "linear"} | {f"layer_{i}.method": "none" for i in range(LAYERS)}
    adapter = {"method": "lora", "rank": 2, "alpha": 8, "roles": ["query", "key", "value", "attn_output", "ff_up",
                                                                   "ff_down"]}
    counts = [lora.count(off | {f"layer_{i}.{k}": v for k, v in adapter.items()}) for i in (1, 2)]
    assert counts[1] - counts[0] == 2 * 2 * (80 - 48)  # ff_up and ff_down, rank 2, 32 more features
