"""The exporter dispatches on the peft method registry: every registered method exports or says why."""

from __future__ import annotations

import pytest

from autopeft.export.peft_format import to_peft_config
from autopeft.peft.plan import PeftPlan
from autopeft.peft.registry import METHODS

#: The smallest entry of each method; a method added to the registry needs a case here.
MINIMAL = {"lora": {"r": 2}, "dora": {"r": 2}, "ia3": {}, "prefix": {"length": 4}, "serial_adapter": {"size": 4},
           "parallel_adapter": {"size": 4}}


def test_every_registered_method_has_a_case() -> None:
    assert set(MINIMAL) == set(METHODS)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_a_uniform_plan_exports_through_the_registry(name: str) -> None:
    plan = PeftPlan.from_selectors({"all": [{"method": name, **MINIMAL[name]}]}, 2)
    export = to_peft_config(plan, "bert")
    equivalent = METHODS[name].peft
    if equivalent is None:
        assert export.unsupported == [f"layer {i}: {name} has no peft equivalent" for i in range(2)]
    elif export.expressible:
        assert export.config is not None and export.config["peft_type"] == equivalent.peft_type
        assert all(export.config.get(k) == v for k, v in equivalent.options.items())
    else:  # expressible by peft in principle; only a known version problem may stop it
        assert export.unsupported and all("peft" in reason for reason in export.unsupported)


def test_mixing_lora_and_dora_names_the_shared_option() -> None:
    plan = PeftPlan.from_selectors({"0": [{"method": "lora", "r": 2}], "1": [{"method": "dora", "r": 2}]}, 2)
    assert to_peft_config(plan, "bert").unsupported == ["mixes DoRA and LoRA: use_dora applies to every module"]
