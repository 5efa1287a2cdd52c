"""`AdaptedLinear`: a frozen projection with the adapter pieces that hang on it.

Every weight-level method attaches here instead of replacing modules its own way, so several
methods can share one projection (IA3 on the output of a key projection that also has LoRA, a
parallel adapter reading the input of `ff_up` and writing to the output of `ff_down`). The order is
fixed and documented in `forward`.
"""

from __future__ import annotations

import torch
from torch import nn


def base_weight(base: nn.Module) -> torch.Tensor:
    """The base projection's weight as (out_features, in_features), whatever its class.

    GPT-2's `Conv1D` stores (in, out); a view is returned, never a copy.
    """
    weight = base.weight
    assert isinstance(weight, torch.Tensor)
    if isinstance(base, nn.Linear):
        return weight
    if type(base).__name__ == "Conv1D":
        return weight.t()
    raise TypeError(f"cannot adapt {type(base).__name__}: expected nn.Linear or transformers Conv1D")


def base_bias(base: nn.Module) -> torch.Tensor | None:
    bias = getattr(base, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


class AdaptedLinear(nn.Module):
    """A frozen projection plus the adapter pieces attached to it.

    Pieces are plain modules in four lists, applied in this order:

    1. `input_transforms[i](x) -> x` (IA3 input scaling, or an observer that records `x`),
    2. `y = base(x)`,
    3. `deltas[i](y, x, base) -> y` (LoRA, DoRA: may add into `y` in place),
    4. `output_transforms[i](y) -> y` (IA3 output scaling, adapters on the output).

    Pieces that own only part of a fused projection (GPT-2's `c_attn`) take the output slice they were
    given by `LayerContext.linear`.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        weight = base_weight(base)
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.input_transforms = nn.ModuleList()
        self.deltas = nn.ModuleList()
        self.output_transforms = nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for transform in self.input_transforms:
            x = transform(x)
        y = self.base(x)
        for delta in self.deltas:
            y = delta(y, x, self.base)
        for transform in self.output_transforms:
            y = transform(y)
        return y

    @property
    def weight(self) -> torch.Tensor:
        """The base weight, as modules that read `proj.weight` (dtype checks in transformers) expect."""
        return self.base.weight  # type: ignore[return-value]

    @property
    def bias(self) -> torch.Tensor | None:
        return base_bias(self.base)
