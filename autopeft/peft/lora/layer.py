"""LoRA and DoRA pieces that hang on an `AdaptedLinear` as `deltas`.

DoRA is a variant of LoRA (as `peft`'s `DoraLinearVariant` is): `DoraDelta` keeps LoRA's A, B and
scaling, adds a magnitude vector, and overrides only `forward`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autopeft.peft.adapted import base_bias, base_weight
from autopeft.peft.lora.config import LoraSpec
from autopeft.peft.lora.fused import add_to_slice, lora_add_, lora_reference


def adapter_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """Adapters train in float32 over half-precision bases (what `peft`'s `autocast_adapter_dtype` does)."""
    return weight_dtype if weight_dtype in (torch.float32, torch.float64) else torch.float32


class LoraDelta(nn.Module):
    """`y[..., out_slice] += scaling * B @ A @ dropout(x)` with A (r, in) and B (slice width, r).

    `fused=True` (default) adds in place through `LoraAddFunction`; `fused=False` runs the plain
    out-of-place reference, for checks and for anything that cannot take an in-place update.
    """

    def __init__(
        self, in_features: int, out_slice: slice, spec: LoraSpec, *,
        device: torch.device | None = None, dtype: torch.dtype | None = None, fused: bool = True,
    ) -> None:
        super().__init__()
        if out_slice.start is None or out_slice.stop is None or out_slice.step not in (None, 1):
            raise ValueError(f"out_slice must have a start and a stop and no step, got {out_slice}")
        self.in_features = in_features
        self.out_slice = out_slice
        self.r = spec.r
        self.scaling = spec.scaling
        self.dropout = spec.dropout
        self.fused = fused
        out_features = out_slice.stop - out_slice.start
        self.lora_A = nn.Parameter(torch.empty(spec.r, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_features, spec.r, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """A as `nn.Linear` initialises its weight (and `peft` its A), B zero: the update starts at zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def forward(self, y: Tensor, x: Tensor, base: nn.Module) -> Tensor:
        # Compute in the base output's dtype (autocast or half bases); the casts are differentiable.
        dtype = y.dtype
        a, b, x = self.lora_A.to(dtype), self.lora_B.to(dtype), x.to(dtype)
        if not self.fused:
            return lora_reference(y, x, a, b, self.scaling, dropout=self.dropout, training=self.training,
                                  out_slice=self.out_slice)
        if not y.is_contiguous():
            y = y.contiguous()
        return lora_add_(y, x, a, b, self.scaling, dropout=self.dropout, training=self.training,
                         out_slice=self.out_slice)

    def extra_repr(self) -> str:
        sl = self.out_slice
        return (f"in={self.in_features}, out_slice=[{sl.start}:{sl.stop}], r={self.r}, "
                f"scaling={self.scaling:g}, dropout={self.dropout:g}, fused={self.fused}")


class DoraDelta(LoraDelta):
    """LoRA with a learned magnitude per output row (Liu et al., 2024), as `peft` computes it.

    Output: `y + (m / ||W + s B A|| - 1) * (W x) + (m / ||W + s B A||) * s B A x` on the slice, where the
    row norm is detached from the graph (the paper's section 4.3) and `W x` is the base output without
    its bias (or, under dropout, `W dropout(x)`, as `peft` recomputes it).
    """

    def __init__(
        self, in_features: int, out_slice: slice, spec: LoraSpec, *, weight: Tensor,
        device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_slice, spec, device=device, dtype=dtype, fused=False)
        with torch.no_grad():
            w = weight[out_slice].to(device=self.lora_A.device, dtype=self.lora_A.dtype)
            norm = self.weight_norm(w, self.lora_A, self.lora_B)
        self.magnitude = nn.Parameter(norm.clone())

    def weight_norm(self, weight: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """Row norms of `W + s B A`, detached: no gradient flows through the norm."""
        lora_weight = (b @ a).detach()
        return torch.linalg.norm(weight + self.scaling * lora_weight, dim=1).detach()

    def forward(self, y: Tensor, x: Tensor, base: nn.Module) -> Tensor:
        dtype = y.dtype
        a, b, x = self.lora_A.to(dtype), self.lora_B.to(dtype), x.to(dtype)
        sl = self.out_slice
        weight = base_weight(base)[sl].to(dtype)
        mag_norm_scale = self.magnitude.to(dtype) / self.weight_norm(weight, a, b)
        if self.training and self.dropout > 0.0:
            x = F.dropout(x, self.dropout, True)
            base_result = F.linear(x, weight)
        else:
            base_result = y[..., sl]
            bias = base_bias(base)
            if bias is not None:
                base_result = base_result - bias[sl].to(dtype)
        lora_result = (x @ a.t()) @ b.t()
        dora = (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * self.scaling
        # Out of place: `base_result` may be a view of `y` that autograd saved for the magnitude's gradient.
        return add_to_slice(y, dora, sl)


def set_fused(model: nn.Module, fused: bool) -> int:
    """Switch every plain LoRA delta in `model` between the fused and the reference path; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is LoraDelta:
            module.fused = fused
            count += 1
    return count
