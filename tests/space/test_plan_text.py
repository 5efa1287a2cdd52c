"""A plan in one line: grouping layers, each method's short form, and agreement with the specs' defaults."""

from __future__ import annotations

from typing import Any

import pytest

from autopeft.space.plan_text import DEFAULT_ROLES, plan_text


@pytest.mark.parametrize(("plan", "text"), [
    ({"0": [{"method": "lora", "r": 8, "roles": ["query", "value"]}],
      "1": [{"method": "lora", "r": 8, "roles": ["query", "value"]}],
      "2": [{"method": "lora", "r": 8, "roles": ["query", "value"]}],
      "3": [{"method": "prefix", "length": 16}]}, "L0-2 lora r8 qv; L3 prefix 16"),
    ({"0-1": [{"method": "lora", "r": 4}], "3": {"method": "serial_adapter", "size": 64}},
     "L0-1 lora r4 qv; L3 serial 64"),
    ({"2": [{"method": "ia3"}, {"method": "parallel_adapter", "size": 16}]}, "L2 ia3 kvd + parallel 16"),
    ({"0": [{"method": "dora", "r": 2, "roles": ["ff_up", "ff_down", "attn_output"]}],
      "2": [{"method": "dora", "r": 2, "roles": ["ff_up", "ff_down", "attn_output"]}]},
     "L0 dora r2 udo; L2 dora r2 udo"),
    ({"all": [{"method": "lora", "r": 2}]}, "all lora r2 qv"),
    ({}, "head only"),
    (None, "head only"),
])
def test_plan_text(plan: Any, text: str) -> None:
    assert plan_text(plan) == text


def test_plan_text_expands_all_when_the_layer_count_is_known() -> None:
    plan = {"all": [{"method": "lora", "r": 2}], "2": [{"method": "prefix", "length": 4}]}
    assert plan_text(plan, num_layers=3) == "L0-1 lora r2 qv; L2 lora r2 qv + prefix 4"


def test_default_roles_are_the_specs_defaults() -> None:
    """plan_text stays torch-free, so it cannot read the specs; this keeps its copy of their defaults true."""
    from autopeft.peft.registry import METHODS

    for name, roles in DEFAULT_ROLES.items():
        fields = {"method": name, "r": 1} if name in ("lora", "dora") else {"method": name}
        spec = METHODS[name].spec_type.model_validate(fields)
        assert [r.value for r in spec.roles] == roles, name


def test_every_registered_method_has_a_short_form() -> None:
    """A method added to the registry must be taught to plan_text (unknown methods show their bare name)."""
    from autopeft.peft.registry import METHODS
    from autopeft.space.plan_text import method_text

    for name in METHODS:
        assert method_text({"method": name}) != name, name
