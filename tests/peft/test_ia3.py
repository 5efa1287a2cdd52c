"""IA3 through `apply_plan`, checked against Hugging Face `peft` on the same weights, and on GPT-2's
fused `c_attn` (key and value slices) against the base model with the scalings merged into it."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.ia3 import IA3Vector
from autopeft.peft.lora import LoraDelta
from tests.conftest import TINY_MODELS, peft_role_regex, tiny_batch

TOL = {"rtol": 1e-5, "atol": 1e-5}

peft = pytest.importorskip("peft")


def vectors(model: nn.Module) -> Iterator[tuple[str, str, IA3Vector]]:
    """(module path, 'input' or 'output', vector) for every IA3 vector in `model`."""
    for name, m in model.named_modules():
        if isinstance(m, AdaptedLinear):
            for v in m.input_transforms:
                assert isinstance(v, IA3Vector)
                yield name, "input", v
            for v in m.output_transforms:
                assert isinstance(v, IA3Vector)
                yield name, "output", v


def build(kind: str, plan_raw: dict[Any, Any]) -> tuple[nn.Module, nn.Module, int]:
    torch.manual_seed(0)
    model = TINY_MODELS[kind]().double()
    plain = copy.deepcopy(model)
    info = apply_plan(model, PeftPlan.from_selectors(plan_raw, 3))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, _, v in vectors(model):
            v.vector.copy_(1 + 0.3 * torch.randn(v.vector.shape, generator=gen))
    return model, plain, info.trainable_params


def loss_of(logits: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(-1.0, 2.0, logits.numel(), dtype=logits.dtype).view_as(logits)
    return (logits * weights).sum() + logits.pow(2).sum()


# (model, roles, peft extras); feedforward (input-scaled) modules are always our ff_down.
PEFT_CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("bert", ["key", "value", "ff_down"], {}),
    ("bert", ["query", "key", "value", "attn_output", "ff_up", "ff_down"], {}),
    ("llama", ["key", "value", "ff_down"], {}),
    ("llama", ["query", "attn_output", "ff_gate", "ff_up", "ff_down"], {}),
    ("gpt2", ["attn_output", "ff_up", "ff_down"], {"fan_in_fan_out": True}),
]


@pytest.mark.parametrize("case", PEFT_CASES, ids=[f"{c[0]}-{len(c[1])}roles" for c in PEFT_CASES])
def test_matches_peft_logits_grads_and_counts(case: tuple[str, list[str], dict[str, Any]]) -> None:
    kind, roles, extra = case
    ours, plain, trainable = build(kind, {"all": [{"method": "ia3", "roles": roles}]})
    batch = tiny_batch()
    base_logits = plain(**batch).logits
    config = peft.IA3Config(target_modules=peft_role_regex(kind, roles),
                            feedforward_modules=peft_role_regex(kind, ["ff_down"]), task_type="SEQ_CLS", **extra)
    pm = peft.get_peft_model(plain, config)
    inner = pm.base_model.model
    pairs = []
    with torch.no_grad():
        for name, where, v in vectors(ours):
            theirs = inner.get_submodule(name)
            assert theirs.is_feedforward == (where == "input"), name
            theirs.ia3_l["default"].copy_(v.vector.view_as(theirs.ia3_l["default"]))
            pairs.append((v, theirs.ia3_l["default"]))
    their_count = sum(isinstance(m, peft.tuners.ia3.IA3Layer) for m in inner.modules())
    assert len(pairs) == their_count == 3 * len(roles)

    logits, their_logits = ours(**batch).logits, pm(**batch).logits
    torch.testing.assert_close(logits, their_logits, **TOL)
    assert not torch.allclose(logits, base_logits)
    loss_of(logits).backward()
    loss_of(their_logits).backward()
    for v, theirs in pairs:
        torch.testing.assert_close(v.vector.grad, theirs.grad.flatten(), **TOL)
    head = "classifier" if hasattr(ours, "classifier") else "score"
    their_head = inner.get_submodule(head).modules_to_save["default"]
    torch.testing.assert_close(getattr(ours, head).weight.grad, their_head.weight.grad, **TOL)
    assert trainable == pm.get_nb_trainable_parameters()[0]


def test_gpt2_fused_key_value_slices_match_merged_weights() -> None:
    """IA3 on GPT-2's key and value (two slices of one `c_attn`) and on `mlp.c_proj`'s input."""
    ours, plain, _ = build("gpt2", {"all": [{"method": "ia3", "roles": ["key", "value", "ff_down"]}]})
    c_attn = ours.transformer.h[0].attn.c_attn
    assert [(v.span.start, v.span.stop) for v in c_attn.output_transforms] == [(32, 64), (64, 96)]
    batch = tiny_batch()
    logits = ours(**batch).logits
    loss_of(logits).backward()

    leaves: dict[str, torch.Tensor] = {}
    params: dict[str, torch.Tensor] = {}
    for name, where, v in vectors(ours):
        key = f"{name}.{where}.{v.span.start}"
        leaf = leaves[key] = v.vector.detach().clone().requires_grad_(True)
        base = plain.get_submodule(name)
        weight = params.get(f"{name}.weight", base.weight.detach())  # Conv1D: (in, out)
        bias = params.get(f"{name}.bias", base.bias.detach())
        if where == "input":
            weight = weight * leaf[:, None]
        else:
            scale = torch.cat([torch.ones(v.span.start, dtype=leaf.dtype), leaf,
                               torch.ones(v.width - v.span.stop, dtype=leaf.dtype)])
            weight, bias = weight * scale, bias * scale
        params[f"{name}.weight"], params[f"{name}.bias"] = weight, bias
    want = torch.func.functional_call(plain, params, args=(), kwargs=batch).logits
    torch.testing.assert_close(logits, want, **TOL)
    grads = torch.autograd.grad(loss_of(want), list(leaves.values()))
    for (name, where, v), grad in zip(vectors(ours), grads, strict=True):
        torch.testing.assert_close(v.vector.grad, grad, **TOL, msg=f"{name} {where}")


def test_fresh_vectors_are_ones_and_change_nothing(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = tiny_model_factory().double()
    plain = copy.deepcopy(model)
    info = apply_plan(model, PeftPlan.from_selectors({"all": [{"method": "ia3"}]}, 3))
    assert all(bool(torch.all(v.vector == 1)) for _, _, v in vectors(model))
    head = "classifier" if hasattr(model, "classifier") else "score"
    sizes = sum(v.vector.numel() for _, _, v in vectors(model))
    assert info.trainable_params == sizes + sum(p.numel() for p in getattr(model, head).parameters())
    batch = tiny_batch()
    torch.testing.assert_close(model(**batch).logits, plain(**batch).logits, **TOL)


def test_ia3_scales_after_lora_on_the_same_projection() -> None:
    """Order on one projection: IA3 input scaling, base, LoRA delta, IA3 output scaling."""
    plan = {"all": [{"method": "ia3", "roles": ["value", "ff_down"]},  # listed first, attached after LoRA
                    {"method": "lora", "r": 2, "roles": ["value", "ff_down"]}]}
    model, _, _ = build("bert", plan)
    layer = model.bert.encoder.layer[1]
    x = torch.randn(2, 4, 32, dtype=torch.float64)
    h = torch.randn(2, 4, 48, dtype=torch.float64)
    for linear, inp in ((layer.attention.self.value, x), (layer.output.dense, h)):
        lora = linear.deltas[0]
        assert isinstance(lora, LoraDelta)
        with torch.no_grad():
            lora.lora_B.normal_()
        scale_in = linear.input_transforms[0].vector if len(linear.input_transforms) else 1.0
        scale_out = linear.output_transforms[0].vector if len(linear.output_transforms) else 1.0
        xs = inp * scale_in
        want = (linear.base(xs) + lora.scaling * xs @ lora.lora_A.t() @ lora.lora_B.t()) * scale_out
        torch.testing.assert_close(linear(inp), want, **TOL)


def test_output_slice_scaling_leaves_the_other_slices_alone() -> None:
    vec = IA3Vector(12, slice(4, 8), dtype=torch.float64)
    with torch.no_grad():
        vec.vector.fill_(3.0)
    y = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    out = vec(y)
    torch.testing.assert_close(out[:, 4:8], 3 * y[:, 4:8])
    torch.testing.assert_close(out[:, :4], y[:, :4])
    torch.testing.assert_close(out[:, 8:], y[:, 8:])
    out.sum().backward()
    torch.testing.assert_close(vec.vector.grad, y.detach()[:, 4:8].sum(0))
    with pytest.raises(ValueError, match="does not fit"):
        IA3Vector(12, slice(8, 16))
