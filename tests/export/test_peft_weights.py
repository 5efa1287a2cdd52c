"""A `peft` adapter's weights read back into our model: every trainable tensor comes back exactly, for every
family `peft` can express (LoRA with per-layer ranks and fused projections, DoRA, IA3, prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from autopeft.errors import ConfigError
from autopeft.export import save_peft_adapter
from autopeft.export.peft_format import peft_prefix_unsupported
from autopeft.export.peft_weights import load_peft_weights
from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.prefix.layer import PrefixKV
from autopeft.train.state import trainable_state
from tests.conftest import TINY_MODELS
from tests.export.test_peft_format import build

pytest.importorskip("peft")

PLANS: dict[str, tuple[str, dict[Any, Any]]] = {
    "lora ranks": ("bert", {"0": [{"method": "lora", "r": 2, "roles": ["query", "value"]}],
                            "1-2": [{"method": "lora", "r": 4, "roles": ["query", "ff_down"]}]}),
    "lora fused qkv": ("gpt2", {"all": [{"method": "lora", "r": 2, "roles": ["query", "key", "value"]}]}),
    "dora": ("llama", {"0-1": [{"method": "dora", "r": 4, "roles": ["query", "value", "ff_down"]}]}),
    "ia3 fused": ("gpt2", {"0-1": [{"method": "ia3", "roles": ["query", "key", "value", "ff_down"]}]}),
    "ia3 bert": ("bert", {"all": [{"method": "ia3"}]}),
    "prefix": ("bert", {"all": [{"method": "prefix", "length": 3}]}),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_every_trainable_tensor_comes_back(name: str, tmp_path: Path) -> None:
    kind, plan_raw = PLANS[name]
    if name == "prefix" and (broken := peft_prefix_unsupported()):
        pytest.skip(broken)
    trained, _, plan = build(kind, plan_raw)
    with torch.no_grad():
        for module in trained.modules():
            if isinstance(module, PrefixKV) and module.key is not None:
                module.key.mul_(1.5)
    export = save_peft_adapter(trained, plan, tmp_path / "peft")
    assert export.expressible, export.unsupported

    torch.manual_seed(5)  # other random adapters and head, to be overwritten
    fresh = TINY_MODELS[kind]().double()
    apply_plan(fresh, PeftPlan.from_selectors(plan_raw, 3))
    load_peft_weights(fresh, load_file(tmp_path / "peft" / "adapter_model.safetensors"))
    want, got = trainable_state(trained), trainable_state(fresh)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_weights_of_another_plan_are_refused(tmp_path: Path) -> None:
    trained, _, plan = build("bert", PLANS["lora ranks"][1])
    save_peft_adapter(trained, plan, tmp_path / "peft")
    other = TINY_MODELS["bert"]().double()
    apply_plan(other, PeftPlan.from_selectors({"0": [{"method": "lora", "r": 2, "roles": ["query"]}]}, 3))
    with pytest.raises(ConfigError, match="does not fit the model adapted by the plan"):
        load_peft_weights(other, load_file(tmp_path / "peft" / "adapter_model.safetensors"))
