"""Attach serial and parallel bottleneck adapters to one layer, by role."""

from __future__ import annotations

from autopeft.errors import UnsupportedArchitectureError
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.bottleneck.config import ParallelAdapterSpec, SerialAdapterSpec
from autopeft.peft.bottleneck.layer import (
    BottleneckAdapter,
    InputRecorder,
    ParallelAdapter,
    RecordedInput,
    SerialAdapter,
)
from autopeft.peft.context import LayerContext
from autopeft.peft.roles import Role

SERIAL_ROLES = {"pfeiffer": (Role.FF_DOWN,), "houlsby": (Role.ATTN_OUTPUT, Role.FF_DOWN)}


def _whole_output(ctx: LayerContext, role: Role) -> AdaptedLinear:
    """The projection holding `role`, which must own its whole output: an adapter on a block's output
    reads and writes all of it, which a slice of a fused projection cannot give."""
    linear, part = ctx.linear(role)
    if (part.start, part.stop) != (0, linear.out_features):
        raise UnsupportedArchitectureError(
            f"layer {ctx.index}: role {role.value} is part of a fused projection; "
            "bottleneck adapters need a projection of its own"
        )
    return linear


def attach_serial(ctx: LayerContext, spec: SerialAdapterSpec) -> None:
    """`y + adapter(y)` on the output of `ff_down` (pfeiffer), and of `attn_output` too (houlsby)."""
    for role in SERIAL_ROLES[spec.placement]:
        linear = _whole_output(ctx, role)
        weight = linear.weight
        adapter = BottleneckAdapter(linear.out_features, spec.size, spec.activation,
                                    device=weight.device, dtype=weight.dtype)
        linear.output_transforms.append(SerialAdapter(adapter))


def attach_parallel(ctx: LayerContext, spec: ParallelAdapterSpec) -> None:
    """Record the input of `ff_up`, add `scaling * adapter(input)` to the output of `ff_down`.

    In gated blocks (Llama) `ff_gate` reads the same input as `ff_up`, so recording `ff_up` suffices.
    """
    up, _ = ctx.linear(Role.FF_UP)
    down = _whole_output(ctx, Role.FF_DOWN)
    weight = down.weight
    state = RecordedInput()
    adapter = BottleneckAdapter(up.in_features, spec.size, spec.activation, out_features=down.out_features,
                                device=weight.device, dtype=weight.dtype)
    up.input_transforms.append(InputRecorder(state))
    down.output_transforms.append(ParallelAdapter(adapter, state, spec.scaling))
