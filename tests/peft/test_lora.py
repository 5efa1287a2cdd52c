"""LoRA and DoRA through `apply_plan`, checked against Hugging Face `peft` on the same weights.

Where `peft` cannot express a case (one role's slice of GPT-2's fused `c_attn`), the reference is the
base model run with the update merged into its weight, through `torch.func.functional_call`, so that
gradients reach the adapter tensors by plain autograd.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.lora import DoraDelta, LoraDelta, set_fused
from autopeft.peft.lora.config import LoraSpec
from tests.conftest import TINY_MODELS, peft_role_regex, tiny_batch, tiny_gpt2

TOL = {"rtol": 1e-5, "atol": 1e-5}

peft = pytest.importorskip("peft")


def adapted(model: nn.Module) -> dict[str, AdaptedLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AdaptedLinear)}


def perturb(model: nn.Module, seed: int = 1) -> None:
    """Make every adapter non-trivial (B non-zero, magnitudes off their initial norms)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraDelta):
                module.lora_B.copy_(0.3 * torch.randn(module.lora_B.shape, generator=gen))
            if isinstance(module, DoraDelta):
                module.magnitude.mul_(1 + 0.2 * torch.randn(module.magnitude.shape, generator=gen))


def loss_of(logits: torch.Tensor) -> torch.Tensor:
    weights = torch.linspace(-1.0, 2.0, logits.numel(), dtype=logits.dtype).view_as(logits)
    return (logits * weights).sum() + logits.pow(2).sum()


def build(kind: str, plan_raw: dict[Any, Any]) -> tuple[nn.Module, nn.Module, int]:
    """(our adapted model, an untouched float64 copy of the same weights, our trainable count)."""
    torch.manual_seed(0)
    model = TINY_MODELS[kind]().double()
    plain = copy.deepcopy(model)
    info = apply_plan(model, PeftPlan.from_selectors(plan_raw, 3))
    perturb(model)
    return model, plain, info.trainable_params


def to_peft(plain: nn.Module, ours: nn.Module, config: Any) -> Any:
    """`peft` on the plain copy, with our adapter values copied in."""
    pm = peft.get_peft_model(plain, config)
    inner = pm.base_model.model
    hit = 0
    with torch.no_grad():
        for name, linear in adapted(ours).items():
            theirs = inner.get_submodule(name)
            for delta in linear.deltas:
                theirs.lora_A["default"].weight.copy_(delta.lora_A)
                theirs.lora_B["default"].weight.copy_(delta.lora_B)
                if isinstance(delta, DoraDelta):
                    theirs.lora_magnitude_vector["default"].weight.copy_(delta.magnitude)
                hit += 1
    assert hit == sum(isinstance(m, peft.tuners.lora.LoraLayer) for m in inner.modules()) > 0
    return pm


def compare_grads(ours: nn.Module, pm: Any) -> None:
    inner = pm.base_model.model
    for name, linear in adapted(ours).items():
        theirs = inner.get_submodule(name)
        for delta in linear.deltas:
            torch.testing.assert_close(delta.lora_A.grad, theirs.lora_A["default"].weight.grad, **TOL)
            torch.testing.assert_close(delta.lora_B.grad, theirs.lora_B["default"].weight.grad, **TOL)
            if isinstance(delta, DoraDelta):
                torch.testing.assert_close(delta.magnitude.grad,
                                           theirs.lora_magnitude_vector["default"].weight.grad, **TOL)
    head = "classifier" if hasattr(ours, "classifier") else "score"
    their_head = inner.get_submodule(head).modules_to_save["default"]
    torch.testing.assert_close(getattr(ours, head).weight.grad, their_head.weight.grad, **TOL)


# (model, our method entry, peft LoraConfig extras). Roles are chosen so every model's case hits
# several kinds of projection; GPT-2 only on its unfused Conv1D projections (peft's fan_in_fan_out).
PEFT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("bert", {"method": "lora", "r": 4, "alpha": 8, "roles": ["query", "value"]}, {}),
    ("bert", {"method": "lora", "r": 4, "alpha": 8, "rslora": True,
              "roles": ["query", "key", "value", "attn_output", "ff_up", "ff_down"]}, {"use_rslora": True}),
    ("bert", {"method": "dora", "r": 4, "alpha": 8, "roles": ["query", "value", "ff_down"]},
     {"use_dora": True}),
    ("bert", {"method": "dora", "r": 2, "alpha": 4, "rslora": True, "roles": ["key", "ff_up"]},
     {"use_dora": True, "use_rslora": True}),
    ("llama", {"method": "lora", "r": 4, "alpha": 16, "roles": ["query", "value", "ff_gate", "ff_down"]}, {}),
    ("llama", {"method": "dora", "r": 4, "alpha": 16,
               "roles": ["query", "key", "value", "attn_output", "ff_gate", "ff_up", "ff_down"]},
     {"use_dora": True}),
    ("gpt2", {"method": "lora", "r": 4, "alpha": 8, "roles": ["attn_output", "ff_up", "ff_down"]},
     {"fan_in_fan_out": True}),
    ("gpt2", {"method": "dora", "r": 4, "alpha": 8, "roles": ["attn_output", "ff_down"]},
     {"fan_in_fan_out": True, "use_dora": True}),
]


def _case_id(case: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    kind, spec, extra = case
    return f"{kind}-{spec['method']}{'-rslora' if extra.get('use_rslora') else ''}-{len(spec['roles'])}roles"


def _peft_config(kind: str, spec: dict[str, Any], extra: dict[str, Any], **more: Any) -> Any:
    return peft.LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=spec.get("dropout", 0.0),
                           target_modules=peft_role_regex(kind, spec["roles"]), task_type="SEQ_CLS",
                           **extra, **more)


@pytest.mark.parametrize("case", PEFT_CASES, ids=[_case_id(c) for c in PEFT_CASES])
def test_matches_peft_logits_grads_and_counts(case: tuple[str, dict[str, Any], dict[str, Any]]) -> None:
    kind, spec, extra = case
    ours, plain, trainable = build(kind, {"all": [spec]})
    batch = tiny_batch()
    base_logits = plain(**batch).logits
    pm = to_peft(plain, ours, _peft_config(kind, spec, extra))
    logits = ours(**batch).logits
    their_logits = pm(**batch).logits
    torch.testing.assert_close(logits, their_logits, **TOL)
    assert not torch.allclose(logits, base_logits)  # the adapters do change the output
    loss_of(logits).backward()
    loss_of(their_logits).backward()
    compare_grads(ours, pm)
    # Both sides count adapters plus the classification head (peft's SEQ_CLS modules_to_save copy).
    assert trainable == pm.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_dropout_in_training_matches_peft_with_the_same_seed(method: str) -> None:
    spec = {"method": method, "r": 4, "alpha": 8, "dropout": 0.3, "roles": ["query", "value", "ff_down"]}
    ours, plain, _ = build("bert", {"all": [spec]})
    pm = to_peft(plain, ours, _peft_config("bert", spec, {"use_dora": method == "dora"}))
    ours.train()
    pm.train()
    batch = tiny_batch()
    torch.manual_seed(5)
    logits = ours(**batch).logits
    torch.manual_seed(5)
    their_logits = pm(**batch).logits
    torch.testing.assert_close(logits, their_logits, **TOL)
    loss_of(logits).backward()
    loss_of(their_logits).backward()
    compare_grads(ours, pm)


def test_per_layer_ranks_match_peft_rank_and_alpha_patterns() -> None:
    roles = ["query", "value"]
    ours, plain, trainable = build("bert", {
        "0": [{"method": "lora", "r": 2, "alpha": 16, "roles": roles}],
        "1": [{"method": "lora", "r": 4, "alpha": 8, "roles": roles}],
        "2": [{"method": "lora", "r": 8, "alpha": 16, "roles": roles}],
    })
    qv = r"attention\.self\.(query|value)"
    ranks = {name: linear.deltas[0].r for name, linear in adapted(ours).items()}
    assert sorted(set(ranks.values())) == [2, 4, 8]
    config = peft.LoraConfig(
        r=2, lora_alpha=16, target_modules=peft_role_regex("bert", roles), task_type="SEQ_CLS",
        rank_pattern={rf"layer\.1\.{qv}": 4, rf"layer\.2\.{qv}": 8},
        alpha_pattern={rf"layer\.1\.{qv}": 8},
    )
    pm = to_peft(plain, ours, config)
    batch = tiny_batch()
    logits, their_logits = ours(**batch).logits, pm(**batch).logits
    torch.testing.assert_close(logits, their_logits, **TOL)
    loss_of(logits).backward()
    loss_of(their_logits).backward()
    compare_grads(ours, pm)
    assert trainable == pm.get_nb_trainable_parameters()[0]


def _merged_logits(plain: nn.Module, ours: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[
        torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of `plain` with every LoRA/DoRA update of `ours` merged into the base weight, and the
    leaf tensors (copies of our adapter values) that gradients reach."""
    leaves: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor] = {}
    for name, linear in adapted(ours).items():
        conv = type(linear.base).__name__ == "Conv1D"
        w = plain.get_submodule(name).weight.detach()
        w = w.t() if conv else w  # (out, in)
        pieces = [w]
        for k, delta in enumerate(linear.deltas):
            sl = delta.out_slice
            a = leaves.setdefault(f"{name}.{k}.A", delta.lora_A.detach().clone().requires_grad_(True))
            b = leaves.setdefault(f"{name}.{k}.B", delta.lora_B.detach().clone().requires_grad_(True))
            part = pieces[-1][sl] + delta.scaling * b @ a
            if isinstance(delta, DoraDelta):
                m = leaves.setdefault(f"{name}.{k}.m", delta.magnitude.detach().clone().requires_grad_(True))
                norm = torch.linalg.norm(pieces[-1][sl] + delta.scaling * (b @ a).detach(), dim=1).detach()
                part = (m / norm)[:, None] * part
            full = pieces[-1]
            pieces.append(torch.cat([full[: sl.start], part, full[sl.stop:]], dim=0))
        weights[f"{name}.weight"] = pieces[-1].t() if conv else pieces[-1]
    logits = torch.func.functional_call(plain, weights, args=(), kwargs=batch).logits
    return logits, leaves


def _our_leaf_grads(ours: nn.Module) -> dict[str, torch.Tensor | None]:
    grads: dict[str, torch.Tensor | None] = {}
    for name, linear in adapted(ours).items():
        for k, delta in enumerate(linear.deltas):
            grads[f"{name}.{k}.A"], grads[f"{name}.{k}.B"] = delta.lora_A.grad, delta.lora_B.grad
            if isinstance(delta, DoraDelta):
                grads[f"{name}.{k}.m"] = delta.magnitude.grad
    return grads


GPT2_FUSED_PLANS = {
    "lora-query-value": {"all": [{"method": "lora", "r": 4, "alpha": 8, "roles": ["query", "value"]}]},
    "dora-query-value": {"all": [{"method": "dora", "r": 4, "alpha": 8, "roles": ["query", "value"]}]},
    "mixed": {"0-1": [{"method": "lora", "r": 2, "alpha": 8, "roles": ["query", "ff_up"]},
                      {"method": "dora", "r": 3, "alpha": 6, "roles": ["value"]}],
              "2": [{"method": "dora", "r": 5, "alpha": 5, "rslora": True, "roles": ["key", "attn_output"]}]},
}


@pytest.mark.parametrize("plan_name", sorted(GPT2_FUSED_PLANS))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_gpt2_fused_c_attn_slices_match_merged_weights(plan_name: str, fused: bool) -> None:
    ours, plain, _ = build("gpt2", GPT2_FUSED_PLANS[plan_name])
    c_attn = ours.transformer.h[0].attn.c_attn
    assert isinstance(c_attn, AdaptedLinear) and c_attn.deltas[0].out_slice.start in (0, 64)
    set_fused(ours, fused)
    batch = tiny_batch()
    logits = ours(**batch).logits
    want, leaves = _merged_logits(plain, ours, batch)
    torch.testing.assert_close(logits, want, **TOL)
    loss_of(logits).backward()
    ref_grads = dict(zip(leaves, torch.autograd.grad(loss_of(want), list(leaves.values())), strict=True))
    got = _our_leaf_grads(ours)
    assert got.keys() == ref_grads.keys()
    for key, grad in ref_grads.items():
        torch.testing.assert_close(got[key], grad, **TOL, msg=key)


def test_fused_and_reference_paths_agree_on_a_whole_model(
        tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = tiny_model_factory().double()
    roles = ["query", "key", "value", "attn_output", "ff_down"]
    apply_plan(model, PeftPlan.from_selectors({"all": [{"method": "lora", "r": 3, "roles": roles}]}, 3))
    perturb(model)
    batch = tiny_batch()
    results = []
    for fused in (True, False):
        model.zero_grad()
        set_fused(model, fused)
        logits = model(**batch).logits
        loss_of(logits).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(results[0][0], results[1][0], **TOL)
    for got, want in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(got, want, **TOL)


MIXED_PLAN = {
    "0": [{"method": "lora", "r": 2, "roles": ["query", "value"]}],
    "1": [{"method": "lora", "r": 8, "alpha": 4, "roles": ["key", "ff_up"]}],
    "2": [{"method": "dora", "r": 4, "roles": ["value", "ff_down"]}],
}


def _expected_count(model: nn.Module) -> int:
    """Adapter sizes from the deltas' own shapes: r*(in + out) per LoRA, + out for DoRA's magnitude."""
    total = 0
    for linear in adapted(model).values():
        for d in linear.deltas:
            out = d.out_slice.stop - d.out_slice.start
            total += d.r * (d.in_features + out) + (out if isinstance(d, DoraDelta) else 0)
    return total


def test_per_layer_ranks_frozen_base_and_only_adapters_and_head_train(
        tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = tiny_model_factory()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    info = apply_plan(model, PeftPlan.from_selectors(MIXED_PLAN, 3))
    layers = [lin for lin in adapted(model).values()]
    assert {d.r for lin in layers for d in lin.deltas} == {2, 8, 4}
    head = "classifier" if hasattr(model, "classifier") else "score"
    head_count = sum(p.numel() for p in getattr(model, head).parameters())
    assert info.head_params == head_count
    assert info.trainable_params == _expected_count(model) + head_count

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapter_names = {n for n in trainable if re.search(r"\.deltas\.\d+\.(lora_A|lora_B|magnitude)$", n)}
    assert trainable == adapter_names | {n for n in trainable if n.startswith(f"{head}.")}
    for name, param in model.named_parameters():
        if name not in trainable:
            assert not param.requires_grad, name

    perturb(model)
    adapters_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss_of(model(**tiny_batch()).logits).backward()
    opt.step()
    for name, param in model.named_parameters():
        base_name = name.replace(".base.", ".")
        if name in trainable:
            if name.endswith(("lora_B", "magnitude")) or name.startswith(head):
                assert not torch.equal(param, adapters_before[name]), f"{name} did not train"
        else:
            assert param.grad is None, name
            assert torch.equal(param, before[base_name]), f"{name} changed"


def test_counts_on_the_meta_device_equal_the_real_ones() -> None:
    plan = PeftPlan.from_selectors(MIXED_PLAN, 3)
    with torch.device("meta"):
        meta = tiny_gpt2()
    real = tiny_gpt2()
    assert apply_plan(meta, plan) == apply_plan(real, plan)


def test_rslora_scaling() -> None:
    spec = LoraSpec(r=16, alpha=8, rslora=True)
    assert spec.scaling == pytest.approx(8 / 4)
    assert LoraSpec(r=16, alpha=8).scaling == pytest.approx(0.5)
    model, _, _ = build("bert", {"all": [{"method": "lora", "r": 16, "alpha": 8, "rslora": True}]})
    linear = model.bert.encoder.layer[0].attention.self.query
    delta = linear.deltas[0]
    assert delta.scaling == pytest.approx(8 / math.sqrt(16))
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    got = linear(x) - linear.base(x)
    torch.testing.assert_close(got, 2.0 * x @ delta.lora_A.t() @ delta.lora_B.t(), **TOL)


def test_fresh_adapters_do_not_change_the_output(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = tiny_model_factory().double()
    plain = copy.deepcopy(model)
    apply_plan(model, PeftPlan.from_selectors(MIXED_PLAN, 3))
    batch = tiny_batch()
    torch.testing.assert_close(model(**batch).logits, plain(**batch).logits, **TOL)
    dora = next(d for lin in adapted(model).values() for d in lin.deltas if isinstance(d, DoraDelta))
    assert bool(torch.all(dora.magnitude > 0))
