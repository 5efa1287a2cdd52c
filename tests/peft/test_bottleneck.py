"""Serial and parallel bottleneck adapters, checked against a hand-written reference on tiny models.

The reference runs the un-adapted model with hooks that compute each adapter with `F.linear` from the
same parameter tensors, so outputs and gradients must agree to rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import autopeft.peft.bottleneck  # noqa: F401  (registers the methods)
from autopeft.errors import UnsupportedArchitectureError
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.bottleneck.layer import BottleneckAdapter, InputRecorder, ParallelAdapter, SerialAdapter
from autopeft.peft.inject import apply_plan, model_layers
from autopeft.peft.plan import PeftPlan
from autopeft.peft.roles import ArchitectureMap, ModuleSlot, Role, architecture_for
from tests.conftest import tiny_batch, tiny_gpt2

ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh,
}

#: name -> (method spec, roles whose output carries an adapter)
CASES: dict[str, tuple[dict[str, Any], tuple[Role, ...]]] = {
    "serial_pfeiffer": ({"method": "serial_adapter", "size": 4}, (Role.FF_DOWN,)),
    "serial_houlsby": ({"method": "serial_adapter", "size": 5, "activation": "gelu", "placement": "houlsby"},
                       (Role.ATTN_OUTPUT, Role.FF_DOWN)),
    "parallel": ({"method": "parallel_adapter", "size": 3, "activation": "tanh", "scaling": 2.5},
                 (Role.FF_DOWN,)),
}
ADAPTED_LAYERS = (0, 2)


def _role_module(model: nn.Module, layer: int, role: Role) -> Any:
    arch = architecture_for(model)
    return model_layers(model, arch)[layer].get_submodule(arch.slot(role).path)


def _adapt(base: nn.Module, spec: dict[str, Any]) -> nn.Module:
    model = copy.deepcopy(base)
    plan = PeftPlan.from_selectors({",".join(map(str, ADAPTED_LAYERS)): [spec]}, num_layers=3)
    apply_plan(model, plan)
    return model


def _reference(adapter: BottleneckAdapter, activation: str, x: torch.Tensor) -> torch.Tensor:
    hidden = ACTIVATION_FNS[activation](F.linear(x, adapter.down.weight, adapter.down.bias))
    return F.linear(hidden, adapter.up.weight, adapter.up.bias)


def _add_reference_hooks(base: nn.Module, adapted: nn.Module, case: str) -> list[Any]:
    """Hooks on `base` that add the adapters of `adapted` by hand, where the plan put them."""
    spec, roles = CASES[case]
    activation = spec.get("activation", "relu")
    handles = []
    for layer in ADAPTED_LAYERS:
        for role in roles:
            piece = _role_module(adapted, layer, role).output_transforms[0]
            target = _role_module(base, layer, role)
            if isinstance(piece, SerialAdapter):
                def serial(_m: nn.Module, _a: Any, y: torch.Tensor,
                           ad: BottleneckAdapter = piece.adapter) -> Any:
                    return y + _reference(ad, activation, y)

                handles.append(target.register_forward_hook(serial))
            else:
                assert isinstance(piece, ParallelAdapter)
                seen: dict[str, torch.Tensor] = {}

                def record(_m: nn.Module, args: tuple[torch.Tensor, ...], seen: dict = seen) -> None:
                    seen["x"] = args[0]

                def parallel(_m: nn.Module, _a: Any, y: torch.Tensor, ad: ParallelAdapter = piece,
                             seen: dict = seen) -> Any:
                    return y + ad.scaling * _reference(ad.adapter, activation, seen.pop("x"))

                handles.append(_role_module(base, layer, Role.FF_UP).register_forward_pre_hook(record))
                handles.append(target.register_forward_hook(parallel))
    return handles


def _adapter_params(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, BottleneckAdapter) for p in m.parameters()]


def _randomise_up(model: nn.Module, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BottleneckAdapter):
                module.up.weight.copy_(torch.randn(module.up.weight.shape, generator=gen) * 0.5)
                module.up.bias.copy_(torch.randn(module.up.bias.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_and_gradients_match_reference(
    tiny_model_factory: Callable[..., nn.Module], case: str
) -> None:
    base = tiny_model_factory().eval()
    model = _adapt(base, CASES[case][0]).eval()
    batch = tiny_batch()
    base_logits = base(**batch).logits

    # Zero up-projection: the adapted model is the base model, bit for bit.
    assert torch.equal(model(**batch).logits, base_logits)

    _randomise_up(model)
    out = model(**batch).logits
    assert not torch.allclose(out, base_logits, atol=1e-3)

    handles = _add_reference_hooks(base, model, case)
    try:
        ref = base(**batch).logits
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)

    params = _adapter_params(model)
    got = torch.autograd.grad(out.square().sum(), params)
    want = torch.autograd.grad(ref.square().sum(), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in got)


@pytest.mark.parametrize("case", sorted(CASES))
def test_placement_and_trainable_count(tiny_model_factory: Callable[..., nn.Module], case: str) -> None:
    base = tiny_model_factory()
    spec, roles = CASES[case]
    model: Any = copy.deepcopy(base)
    info = apply_plan(model, PeftPlan.from_selectors({"0,2": [spec]}, num_layers=3))
    hidden, size = int(model.config.hidden_size), spec["size"]
    per_adapter = 2 * hidden * size + size + hidden
    assert info.trainable_params == len(ADAPTED_LAYERS) * len(roles) * per_adapter + info.head_params

    for layer in range(3):
        for role in architecture_for(model).roles:
            module = _role_module(model, layer, role)
            expected_out = layer in ADAPTED_LAYERS and role in roles
            expected_in = layer in ADAPTED_LAYERS and case == "parallel" and role is Role.FF_UP
            if not (expected_out or expected_in):
                assert not isinstance(module, AdaptedLinear) or not (
                    module.output_transforms or module.input_transforms
                ), (layer, role)
                continue
            assert isinstance(module, AdaptedLinear)
            assert len(module.output_transforms) == int(expected_out)
            assert [type(t) for t in module.input_transforms] == ([InputRecorder] if expected_in else [])


def test_parallel_adapter_releases_recorded_input(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _adapt(tiny_model_factory(), CASES["parallel"][0])
    _randomise_up(model)
    pieces = [m for m in model.modules() if isinstance(m, ParallelAdapter)]
    assert len(pieces) == len(ADAPTED_LAYERS)

    model(**tiny_batch()).logits.sum().backward()
    assert all(p.state.value is None for p in pieces)  # nothing held after the forward pass

    # The down projection alone has nothing to read: an error, never the previous call's input.
    down = _role_module(model, ADAPTED_LAYERS[0], Role.FF_DOWN)
    with pytest.raises(RuntimeError, match="without its up projection"):
        down(torch.zeros(1, 2, down.in_features))


def test_two_forward_passes_do_not_mix(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _adapt(tiny_model_factory(), CASES["parallel"][0]).eval()
    _randomise_up(model)
    first, second = tiny_batch(seed=0), tiny_batch(seed=1)
    want = model(**second).logits
    model(**first)
    torch.testing.assert_close(model(**second).logits, want, atol=0, rtol=0)


def test_fused_projection_is_refused() -> None:
    model = tiny_gpt2()
    fused = ArchitectureMap(layers="h", attention="attn", roles={
        Role.FF_UP: ModuleSlot("mlp.c_fc"), Role.FF_DOWN: ModuleSlot("attn.c_attn", part=2, parts=3),
    })
    plan = PeftPlan.from_selectors({"0": [{"method": "serial_adapter", "size": 2}]}, num_layers=3)
    with pytest.raises(UnsupportedArchitectureError, match="fused"):
        apply_plan(model, plan, arch=fused)
