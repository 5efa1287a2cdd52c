"""Attach IA3 to the projections of one layer."""

from __future__ import annotations

from autopeft.peft.adapted import base_weight
from autopeft.peft.context import LayerContext
from autopeft.peft.ia3.config import IA3Spec
from autopeft.peft.ia3.layer import IA3Vector
from autopeft.peft.lora.layer import adapter_dtype
from autopeft.peft.roles import Role

#: Roles scaled on their input (the feed-forward activation, as in the paper and `peft`'s
#: `feedforward_modules`); every other role is scaled on its output slice.
INPUT_SCALED_ROLES = frozenset({Role.FF_DOWN})


def attach(ctx: LayerContext, spec: IA3Spec) -> None:
    """One vector per role: an input transform for `ff_down`, an output transform otherwise."""
    for role in spec.roles:
        linear, out_slice = ctx.linear(role)
        weight = base_weight(linear.base)
        device, dtype = weight.device, adapter_dtype(weight.dtype)
        if role in INPUT_SCALED_ROLES:
            width = linear.in_features
            linear.input_transforms.append(IA3Vector(width, slice(0, width), device=device, dtype=dtype))
        else:
            width = linear.out_features
            linear.output_transforms.append(IA3Vector(width, out_slice, device=device, dtype=dtype))
