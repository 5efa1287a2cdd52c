"""A space means the same whatever the order of its mappings' keys: PostgreSQL's jsonb reorders them
(shorter keys first), so a stored space must give the same dimensions, compiled plans, encodings and
samples as the YAML file it came from."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from autopeft.errors import ConfigError
from autopeft.space import SearchSpace, load_space
from autopeft.space.encoding import SpaceEncoder
from autopeft.space.enumeration import local_configs
from autopeft.space.params import Param, dependency_order
from autopeft.yamlio import validate

SPACES = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
NUM_LAYERS = 6


def _reorder(value: Any, key: Any) -> Any:
    """Every mapping in ``value`` with its keys sorted by ``key`` (lists keep their order)."""
    if isinstance(value, dict):
        return {k: _reorder(value[k], key) for k in sorted(value, key=key)}
    if isinstance(value, list):
        return [_reorder(v, key) for v in value]
    return value


def _orders(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The space as written, as jsonb returns it, reversed, and shuffled a few times."""
    variants = [raw, _reorder(raw, lambda k: (len(str(k)), str(k))), _reorder(raw, lambda k: [-ord(c) for c in str(k)])]
    for seed in range(4):
        rng = random.Random(seed)
        variants.append(_reorder(raw, lambda _k, rng=rng: rng.random()))
    return variants


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_key_order_changes_nothing(path: Path) -> None:
    written = load_space(path)
    dims = written.dimensions(NUM_LAYERS)
    encoder = SpaceEncoder(dims)
    configs = [written.sample(NUM_LAYERS, random.Random(seed)) for seed in range(30)]
    units = [random.Random(100 + i) for i in range(10)]
    points = [[r.random() for _ in range(encoder.dim)] for r in units]
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for variant in _orders(raw)[1:]:
        space = validate(SearchSpace, variant, source="reordered")
        other_dims = space.dimensions(NUM_LAYERS)
        assert list(other_dims) == list(dims)
        assert other_dims == dims
        other = SpaceEncoder(other_dims)
        assert other.names == encoder.names and other.cat_dims == encoder.cat_dims
        for seed, config in enumerate(configs):
            assert space.sample(NUM_LAYERS, random.Random(seed)) == config
            assert space.compile(config, NUM_LAYERS).model_dump() == written.compile(config, NUM_LAYERS).model_dump()
            assert other.encode(config).tolist() == encoder.encode(config).tolist()
            shuffled = dict(sorted(config.items(), key=lambda kv: random.Random(seed).random()))
            assert other.encode(shuffled).tolist() == encoder.encode(config).tolist()
        for point in points:
            assert other.decode_unit(point) == encoder.decode_unit(point)
        assert local_configs(space, ("method",))[0] == local_configs(written, ("method",))[0]


def test_the_jsonb_order_of_the_quickstart_space_compiles() -> None:
    """The reported failure: `layers` back as rank, size, method left `layer_3.size` unsampled."""
    raw = yaml.safe_load(next(p for p in SPACES if p.stem == "quickstart").read_text(encoding="utf-8"))
    stored = _reorder(raw, lambda k: (len(str(k)), str(k)))
    assert list(stored["layers"]) == ["rank", "size", "method"]
    space = validate(SearchSpace, stored)
    for seed in range(40):
        config = space.sample(NUM_LAYERS, random.Random(seed))
        space.compile(config, NUM_LAYERS)
        assert SpaceEncoder(space.dimensions(NUM_LAYERS)).is_valid(config)


def test_parents_come_first_and_ties_go_by_name() -> None:
    when = {"c": {"b": [1]}, "b": {"a": [1]}, "z": None, "a": None, "d": {"z": [2], "a": [1]}}
    params = {name: Param.model_validate({"choices": [1, 2], "when": w}) for name, w in when.items()}
    assert [c.param for c in params["d"].when] == ["a", "z"]
    assert dependency_order(params) == ["a", "b", "c", "z", "d"]
    assert dependency_order(dict(reversed(params.items()))) == ["a", "b", "c", "z", "d"]


def _space(layers: dict[str, Any]) -> dict[str, Any]:
    return {"name": "s", "layers": layers, "plan": [{"method": "lora", "r": "$rank"}]}


@pytest.mark.parametrize(("layers", "message"), [
    ({"rank": {"choices": [2], "when": {"method": ["lora"]}}, "method": {"choices": ["lora"], "when": {"rank": [2]}}},
     "layers.method.when: the conditions form a cycle (method -> rank -> method)"),
    ({"rank": {"choices": [2], "when": {"rank": [2]}}}, "layers.rank.when: the conditions form a cycle (rank -> rank)"),
    ({"rank": {"choices": [2], "when": {"kind": ["lora"]}}}, "layers.rank.when: 'kind' is not a layers parameter"),
])
def test_cycles_and_unknown_parents_are_one_line_errors(layers: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(SearchSpace, _space(layers), source="s.yaml")
    assert str(err.value) == f"s.yaml: {message}"
    assert "\n" not in str(err.value)


def test_display_keeps_the_written_order() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora"))
    config = space.sample(NUM_LAYERS, random.Random(1))
    shown = space.as_written(config)
    assert shown == config
    local = [k.split(".", 1)[1] for k in shown if k.startswith("layer_1.")]
    assert local == [k for k in space.layers if k in local]
