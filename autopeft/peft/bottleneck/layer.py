"""Bottleneck adapter modules and the pieces that hang them on an `AdaptedLinear`.

A serial adapter is one output transform. A parallel adapter reads the feed-forward input (on `ff_up`)
and writes to the feed-forward output (on `ff_down`), two projections apart: a tiny shared state object
carries the input from one to the other and is emptied as soon as it is read.
"""

from __future__ import annotations

import torch
from torch import nn

from autopeft.peft.bottleneck.config import Activation

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    """`up(act(down(x)))` with `up` zero-initialised, so a new adapter changes nothing (Houlsby et al.
    start near identity; exact zero makes "adapted model == base model at init" testable bit for bit)."""

    def __init__(
        self,
        in_features: int,
        size: int,
        activation: Activation = "relu",
        out_features: int | None = None,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        out_features = in_features if out_features is None else out_features
        self.down = nn.Linear(in_features, size, device=device, dtype=dtype)  # nn.Linear default init
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, out_features, device=device, dtype=dtype)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class SerialAdapter(nn.Module):
    """Output transform `y + adapter(y)`: the adapter sits on a sub-block's output, before its residual."""

    def __init__(self, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.adapter(y)


class RecordedInput:
    """The feed-forward input of one layer, held from `ff_up` until `ff_down` has used it.

    A plain object (not a module): it owns no parameters and must never appear in a state dict.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def take(self) -> torch.Tensor | None:
        """The recorded tensor, forgetting it, so nothing outlives the forward pass that made it."""
        value, self.value = self.value, None
        return value


class InputRecorder(nn.Module):
    """Input transform on `ff_up` that records `x` and returns it unchanged."""

    def __init__(self, state: RecordedInput) -> None:
        super().__init__()
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.state.value = x
        return x


class ParallelAdapter(nn.Module):
    """Output transform on `ff_down`: `y + scaling * adapter(x)`, `x` being the recorded `ff_up` input
    (He et al., 2022: the adapter runs beside the whole feed-forward block)."""

    def __init__(self, adapter: BottleneckAdapter, state: RecordedInput, scaling: float) -> None:
        super().__init__()
        self.adapter = adapter
        self.state = state
        self.scaling = scaling

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.state.take()
        if x is None:
            raise RuntimeError(
                "parallel adapter: the feed-forward down projection ran without its up projection first, "
                "so there is no feed-forward input to read"
            )
        return y + self.scaling * self.adapter(x)

    def extra_repr(self) -> str:
        return f"scaling={self.scaling}"
