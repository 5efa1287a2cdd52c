"""Attach LoRA or DoRA to the projections of one layer."""

from __future__ import annotations

from autopeft.peft.adapted import base_weight
from autopeft.peft.context import LayerContext
from autopeft.peft.lora.config import DoraSpec, LoraSpec
from autopeft.peft.lora.layer import DoraDelta, LoraDelta, adapter_dtype


def attach(ctx: LayerContext, spec: LoraSpec) -> None:
    """Append one low-rank delta per role in `spec.roles`, on the output slice the role owns.

    Adapters are created on the base weight's device (the `meta` device included, for exact counts
    before training) in float32 or the base's float64.
    """
    for role in spec.roles:
        linear, out_slice = ctx.linear(role)
        weight = base_weight(linear.base)
        dtype = adapter_dtype(weight.dtype)
        delta: LoraDelta
        if isinstance(spec, DoraSpec):
            delta = DoraDelta(linear.in_features, out_slice, spec, weight=weight, device=weight.device,
                              dtype=dtype)
        else:
            delta = LoraDelta(linear.in_features, out_slice, spec, device=weight.device, dtype=dtype)
        linear.deltas.append(delta)
