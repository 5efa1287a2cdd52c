"""Bottleneck adapter settings for one layer: serial (Houlsby / Pfeiffer) and parallel (He et al.)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autopeft.peft.spec import MethodSpecBase

Activation = Literal["relu", "gelu", "silu", "tanh"]


class SerialAdapterSpec(MethodSpecBase):
    """`h + up(act(down(h)))` on a sub-block's output, before its residual connection.

    `pfeiffer` places one adapter after the feed-forward output; `houlsby` places one after the
    attention output and one after the feed-forward output.
    """

    method: Literal["serial_adapter"] = "serial_adapter"
    size: int = Field(gt=0, description="Bottleneck width (the reduced dimension); must be > 0.")
    activation: Activation = Field(default="relu", description="Non-linearity inside the bottleneck.")
    placement: Literal["pfeiffer", "houlsby"] = Field(
        default="pfeiffer", description="pfeiffer: after feed-forward only; houlsby: after attention and feed-forward."
    )


class ParallelAdapterSpec(MethodSpecBase):
    """`FFN(x) + scaling * up(act(down(x)))`: a bottleneck beside the feed-forward block (He et al., 2022)."""

    method: Literal["parallel_adapter"] = "parallel_adapter"
    size: int = Field(gt=0, description="Bottleneck width; must be > 0.")
    activation: Activation = Field(default="relu", description="Non-linearity inside the bottleneck.")
    scaling: float = Field(default=4.0, gt=0, description="Multiplier on the adapter output (He et al. use 4).")
