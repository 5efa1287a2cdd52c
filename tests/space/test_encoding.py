"""`SpaceEncoder`: round trips on the shipped spaces, conditions, log scaling, bounds, clipping."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autopeft.errors import ConfigError
from autopeft.space import Param, SearchSpace, load_space
from autopeft.space.encoding import INACTIVE_NUMERIC, SpaceEncoder, choice_index, config_key

SPACES = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
LAYERS = 6


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for name, value in a.items():
        if isinstance(value, float) and not math.isclose(value, b[name], rel_tol=1e-9):
            return False
        if not isinstance(value, float) and value != b[name]:
            return False
    return True


@pytest.fixture(params=SPACES, ids=lambda p: p.stem)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return load_space(request.param)


def test_round_trip_on_random_configurations(space: SearchSpace) -> None:
    enc = SpaceEncoder(space.dimensions(LAYERS))
    rng = random.Random(0)
    for _ in range(50):
        config = space.sample(LAYERS, rng)
        vec = enc.encode(config)
        assert vec.shape == (enc.dim,)
        assert np.all(vec >= enc.bounds[0]) and np.all(vec <= enc.bounds[1])
        back = enc.decode(vec)
        assert _same(back, config), (config, back)
        assert enc.is_valid(back)
        assert config_key(back) == config_key(config) or any(isinstance(v, float) for v in config.values())


def test_unit_cube_points_decode_to_valid_configurations(space: SearchSpace) -> None:
    enc = SpaceEncoder(space.dimensions(LAYERS))
    rng = np.random.default_rng(0)
    for u in rng.random((50, enc.dim)):
        config = enc.decode_unit(u)
        assert enc.is_valid(config)
        assert _same(enc.decode_unit(enc.to_unit(config, fill=u)), config)


def test_out_of_bounds_vectors_are_clipped_to_valid_configurations(space: SearchSpace) -> None:
    enc = SpaceEncoder(space.dimensions(LAYERS))
    rng = np.random.default_rng(1)
    for vec in rng.normal(0.0, 5.0, (30, enc.dim)):
        assert enc.is_valid(enc.decode(vec))


def test_mixed_space_conditions_and_inactive_codes() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "mixed"))
    enc = SpaceEncoder(space.dimensions(LAYERS))
    config = space.sample(LAYERS, random.Random(3))
    for i in range(LAYERS):
        config[f"layer_{i}.method"] = "prefix"
        for name in ("rank", "size"):
            config.pop(f"layer_{i}.{name}", None)
        config[f"layer_{i}.length"] = 4
    vec = enc.encode(config)
    col = {name: j for j, name in enumerate(enc.names)}
    assert vec[col["layer_0.rank"]] == INACTIVE_NUMERIC
    assert vec[col["layer_0.size"]] == INACTIVE_NUMERIC
    assert col["layer_0.method"] in enc.cat_dims
    assert "layer_0.rank" not in enc.decode(vec)
    # switching the parent on activates the child in decode, which takes the column's value
    vec[col["layer_0.method"]] = 1.0  # lora
    decoded = enc.decode(vec)
    assert decoded["layer_0.method"] == "lora" and "layer_0.length" not in decoded
    assert decoded["layer_0.rank"] == round(math.exp(0.5 * math.log(32)))


def test_categorical_inactive_code_is_its_own_category() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora"))
    enc = SpaceEncoder(space.dimensions(LAYERS))
    config = space.sample(LAYERS, random.Random(0))
    config["layer_0.method"] = "none"
    for name in ("roles", "rank", "alpha"):
        config.pop(f"layer_0.{name}", None)
    col = enc.names.index("layer_0.roles")
    assert col in enc.cat_dims
    assert enc.encode(config)[col] == 4.0 == enc.bounds[1, col]


def test_list_valued_choices_map_back_to_the_choice_objects() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora"))
    dims = space.dimensions(LAYERS)
    enc = SpaceEncoder(dims)
    rng = random.Random(5)
    config = space.sample(LAYERS, rng)
    while config["layer_0.method"] == "none":
        config = space.sample(LAYERS, rng)
    config["layer_0.roles"] = tuple(config["layer_0.roles"])  # e.g. read back as a tuple
    back = enc.decode(enc.encode(config))
    roles = dims["layer_0.roles"]
    assert back["layer_0.roles"] is roles.choices[choice_index(roles, back["layer_0.roles"])]  # type: ignore[index]
    assert isinstance(back["layer_0.roles"], list)


def test_log_scaling_and_ordinal_choices() -> None:
    dims = {
        "lr": Param.model_validate({"float": [1e-4, 1e-2], "log": True}),
        "lin": Param.model_validate({"float": [0.0, 10.0]}),
        "rank": Param.model_validate({"int": [1, 64], "log": True}),
        "size": Param.model_validate({"choices": [4, 16, 64]}),
        "name": Param.model_validate({"choices": ["a", "b"]}),
    }
    enc = SpaceEncoder(dims)
    vec = enc.encode({"lr": 1e-3, "lin": 2.5, "rank": 8, "size": 16, "name": "b"})
    np.testing.assert_allclose(vec, [0.5, 0.25, 0.5, 0.5, 1.0])
    assert enc.cat_dims == [4]
    np.testing.assert_array_equal(enc.bounds, [[0, 0, 0, 0, 0], [1, 1, 1, 1, 2]])
    assert SpaceEncoder(dims, ordinal_choices=False).cat_dims == [3, 4]
    # uniform unit points are log-uniform values: the median of lr is the geometric mean
    draws = [SpaceEncoder(dims).decode_unit(u)["lr"] for u in np.random.default_rng(0).random((2000, 5))]
    assert 7e-4 < float(np.median(draws)) < 1.4e-3


def test_encode_rejects_values_outside_the_space() -> None:
    enc = SpaceEncoder({"size": Param.model_validate({"choices": [4, 16]})})
    with pytest.raises(ConfigError, match="size"):
        enc.encode({"size": 5})
    with pytest.raises(ConfigError, match="missing"):
        enc.encode({})
    with pytest.raises(ValueError, match="1 values, got 2"):
        enc.decode([0.0, 1.0])


def test_encode_many_shape() -> None:
    enc = SpaceEncoder({"x": Param.model_validate({"float": [0.0, 1.0]})})
    assert enc.encode_many([]).shape == (0, 1)
    assert enc.encode_many([{"x": 0.2}, {"x": 0.4}]).shape == (2, 1)
