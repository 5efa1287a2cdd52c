"""Search spaces: the shipped files load, every random configuration compiles to a plan that applies,
conditions switch parameters on and off, and bad files or values get one clear error."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from autopeft.errors import ConfigError
from autopeft.peft import PeftPlan, apply_plan
from autopeft.space import SearchSpace, load_space
from tests.conftest import tiny_bert

SPACES = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))


def test_the_shipped_spaces_exist() -> None:
    assert {p.stem for p in SPACES} >= {"autopeft", "lora", "lora_peft", "mixed", "quickstart"}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_random_configurations_compile_and_apply(path: Path) -> None:
    space = load_space(path)
    rng = random.Random(0)
    for _ in range(20):
        config = space.sample(6, rng)
        trial_config = space.compile(config, 6)
        plan = PeftPlan.from_selectors(trial_config.plan, 6)
        info = apply_plan(tiny_bert(layers=6), plan)
        assert info.trainable_params >= info.head_params
        if "learning_rate" in space.training:
            assert trial_config.learning_rate == config["learning_rate"]


def test_dimensions_expand_per_layer_and_conditions_follow() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora"))
    dims = space.dimensions(3)
    assert list(dims)[:2] == ["learning_rate", "lr_schedule"]
    assert "layer_2.rank" in dims and dims["layer_2.rank"].when[0].param == "layer_2.method"
    assert not dims["layer_2.rank"].active({"layer_2.method": "none"})
    assert dims["layer_2.rank"].active({"layer_2.method": "lora"})


def _space(**overrides: object) -> SearchSpace:
    raw: dict[str, object] = {
        "name": "t",
        "training": {"learning_rate": {"float": [1e-4, 1e-2], "log": True}},
        "layers": {"method": {"choices": ["none", "lora"]}, "rank": {"int": [1, 8], "when": {"method": ["lora"]}}},
        "plan": [{"method": "lora", "r": "$rank", "when": {"method": ["lora"]}}],
    }
    raw.update(overrides)
    return SearchSpace.model_validate(raw)


def test_compile_builds_the_plan_from_the_template() -> None:
    space = _space()
    config = {"learning_rate": 1e-3, "layer_0.method": "lora", "layer_0.rank": 4, "layer_1.method": "none"}
    trial_config = space.compile(config, 2)
    assert trial_config.plan == {"0": [{"method": "lora", "r": 4}]}
    assert trial_config.learning_rate == 1e-3


@pytest.mark.parametrize(("config", "field", "message"), [
    ({"learning_rate": 1e-3, "layer_0.method": "lora", "layer_1.method": "none"}, "layer_0.rank", "missing"),
    ({"learning_rate": 1e-3, "layer_0.method": "lora", "layer_0.rank": 9, "layer_1.method": "none"},
     "layer_0.rank", "9 is not int in [1, 8]"),
    ({"learning_rate": 1e-3, "layer_0.method": "x", "layer_1.method": "none"}, "layer_0.method", "one of none, lora"),
    ({"learning_rate": 1e-3, "layer_0.method": "none", "layer_1.method": "none", "foo": 1}, "foo", "not a parameter"),
])
def test_bad_values_name_the_parameter(config: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _space().compile(config, 2, source="c.yaml")
    assert str(info.value).startswith(f"c.yaml: {field}: ") and message in str(info.value)


def test_log_ranges_sample_inside_and_ints_stay_ints() -> None:
    space = _space()
    rng = random.Random(1)
    for _ in range(200):
        config = space.sample(4, rng)
        assert 1e-4 <= config["learning_rate"] <= 1e-2
        for i in range(4):
            if config[f"layer_{i}.method"] == "lora":
                assert isinstance(config[f"layer_{i}.rank"], int) and 1 <= config[f"layer_{i}.rank"] <= 8
            else:
                assert f"layer_{i}.rank" not in config


@pytest.mark.parametrize(("patch", "message"), [
    ({"plan": [{"method": "lora", "r": "$nope"}]}, "$nope is not a parameter"),
    ({"training": {"batch_size": {"choices": [8]}}}, "batch_size cannot be searched"),
    ({"layers": {"rank": {"int": [1, 8], "when": {"method": ["lora"]}}}}, "'method' is not a layers parameter"),
    ({"layers": {"rank": {"int": [8, 1]}}}, "empty"),
    ({"layers": {"rank": {"choices": [1], "log": True}}}, "log applies to int and float ranges only"),
    ({"layers": {"rank": {"int": [1, 8], "choices": [2]}}}, "exactly one of"),
])
def test_bad_space_files_are_one_line_errors(tmp_path: Path, patch: dict[str, object], message: str) -> None:
    raw = {"name": "t", "layers": {"method": {"choices": ["none", "lora"]}},
           "plan": [{"method": "lora", "r": 2, "when": {"method": ["lora"]}}]}
    raw.update(patch)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def test_searched_layers_limit_the_expansion() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "quickstart"))
    dims = space.dimensions(6)
    assert {name.split(".")[0] for name in dims if name.startswith("layer_")} == {"layer_3", "layer_4", "layer_5"}


def test_constraints_check_the_trainable_share() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora"))
    (limit,) = space.constraints
    assert limit.allows(100, 0.01) and not limit.allows(100, 0.03)


def test_expanding_and_sampling_a_space_imports_no_torch() -> None:
    """Samplers expand spaces in the study loop, which must stay plain Python (DESIGN.md)."""
    import subprocess
    import sys

    code = ("import random, sys; from autopeft.space import load_space; "
            "s = load_space('search_spaces/mixed.yaml'); s.sample(6, random.Random(0)); "
            "print('torch' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shared_parameters_are_drawn_once_and_read_by_every_layer() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora_peft"))
    dims = space.dimensions(6)
    assert list(dims)[:3] == ["learning_rate", "lr_schedule", "variant"] and "layer_0.variant" not in dims
    rng = random.Random(0)
    variants = set()
    for _ in range(50):
        config = space.sample(6, rng)
        plan = space.compile(config, 6).plan
        assert sorted(plan) == [str(i) for i in range(6)]  # every layer adapted: peft needs one adapted layer
        assert {m["method"] for methods in plan.values() for m in methods} == {config["variant"]}
        variants.add(config["variant"])
    assert variants == {"lora", "dora"}
    assert space.compile(config, 6).model_dump(exclude_none=True).keys() == {"plan", "learning_rate", "lr_schedule"}


@pytest.mark.parametrize(("patch", "message"), [
    ({"shared": {"rank": {"choices": [2]}}}, "'rank' is both a shared and a layers parameter"),
    ({"shared": {"variant": {"choices": ["lora"], "when": {"method": ["lora"]}}}},
     "shared.variant.when: 'method' is not a shared parameter"),
])
def test_bad_shared_parameters(patch: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _space(**patch)


def test_the_peft_constraint_is_a_rule_on_the_plan_not_a_count_limit() -> None:
    space = load_space(next(p for p in SPACES if p.stem == "lora_peft"))
    share, peft = space.constraints
    assert space.needs_peft and not load_space(next(p for p in SPACES if p.stem == "lora")).needs_peft
    assert space.count_limits == (share,) and share.limits_count and not peft.limits_count
    assert peft.allows(10**9, 1.0)


@pytest.mark.parametrize("rule", [{"peft_expressible": False}, {"peft_expressible": True, "max_trainable_share": 0.1},
                                  {"name": "nothing"}])
def test_a_constraint_states_exactly_one_rule(rule: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"constraints\.0"):
        _space(constraints=[rule])
