"""A space's `defaults`: what practitioners try first, written once per space, expanded to every searched layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopeft.errors import ConfigError
from autopeft.space import SearchSpace
from autopeft.space.space import load_space
from autopeft.train.counting import ParamCounter
from autopeft.train.recipe import load_recipe
from autopeft.yamlio import validate

REPO = Path(__file__).resolve().parents[2]
SPACES = REPO / "search_spaces"

SPACE: dict[str, Any] = {
    "name": "d",
    "training": {"learning_rate": {"float": [1.0e-4, 1.0e-2], "log": True}},
    "searched_layers": "1-2",
    "layers": {"method": {"choices": ["none", "lora"]}, "rank": {"choices": [4, 8], "when": {"method": ["lora"]}}},
    "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}}],
}


def _space(*defaults: dict[str, Any]) -> SearchSpace:
    return validate(SearchSpace, {**SPACE, "defaults": list(defaults)}, source="d.yaml")


def test_a_default_applies_its_layer_values_to_every_searched_layer() -> None:
    space = _space({"name": "lora 8", "values": {"learning_rate": 1e-3, "method": "lora", "rank": 8}},
                   {"name": "head", "values": {"learning_rate": 1e-3, "method": "none", "rank": 8}})
    (lora_name, lora), (head_name, head) = space.default_configs(4)
    assert (lora_name, head_name) == ("lora 8", "head")
    assert lora == {"learning_rate": 1e-3, "layer_1.method": "lora", "layer_1.rank": 8,
                    "layer_2.method": "lora", "layer_2.rank": 8}
    assert head == {"learning_rate": 1e-3, "layer_1.method": "none", "layer_2.method": "none"}  # rank: inactive
    assert space.compile(lora, 4).plan == {"1": [{"method": "lora", "r": 8, "roles": ["query", "value"]}],
                                           "2": [{"method": "lora", "r": 8, "roles": ["query", "value"]}]}


@pytest.mark.parametrize(("default", "message"), [
    ({"name": "x", "values": {"learning_rate": 1e-3, "method": "lora", "rank": 8, "size": 4}},
     "defaults.0.values: 'size' is not a parameter"),
    ({"name": "x", "values": {"learning_rate": 1e-3, "method": "lora"}}, "'x' gives no 'rank', which it needs"),
    ({"name": "x", "values": {"learning_rate": 1e-3, "method": "lora", "rank": 16}},
     "defaults.0.values.rank: 16 is not one of 4, 8"),
    ({"name": "x", "values": {"learning_rate": 1.0, "method": "none"}}, "defaults.0.values.learning_rate: 1.0 is not"),
    ({"name": "", "values": {}}, "defaults.0.name"),
    ({"name": "x", "valeus": {}}, "defaults.0.values: Field required"),
])
def test_a_bad_default_is_one_line_naming_the_file_and_field(default: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _space(default)
    text = str(caught.value)
    assert "\n" not in text and "d.yaml" in text and message in text, text


def test_two_defaults_of_one_name_are_refused() -> None:
    default = {"name": "x", "values": {"learning_rate": 1e-3, "method": "none"}}
    with pytest.raises(ConfigError, match=r"defaults\.1\.name: 'x' names two defaults"):
        _space(default, default)


def test_a_default_may_not_take_a_warm_start_seeds_name() -> None:
    """`pareto` tells seeds apart by their names: a default named like a warm start's would be mislabelled."""
    default = {"name": "warm start: other #3", "values": {"learning_rate": 1e-3, "method": "none"}}
    with pytest.raises(ConfigError, match=r"defaults\.0\.name: 'warm start: other #3' starts with 'warm start: '"):
        _space(default)


@pytest.mark.parametrize("name", ["quickstart", "lora", "lora_peft", "mixed", "autopeft"])
def test_every_shipped_space_names_defaults_that_compile_and_are_feasible(name: str) -> None:
    space = load_space(SPACES / f"{name}.yaml")
    counter = ParamCounter.for_recipe(load_recipe(REPO / "trials/demo.yaml"), space)  # the packaged MiniLM-L6
    defaults = space.default_configs(6)
    assert defaults, f"{name}.yaml names no defaults"
    for default_name, config in defaults:
        space.compile(config, 6, source=default_name)
        assert counter.feasible(config), default_name
    assert any(all(v != "lora" for k, v in c.items() if k.endswith(("method", "variant"))) for _, c in defaults) or \
        name == "lora_peft"  # every space but the LoRA-only one offers something besides LoRA
