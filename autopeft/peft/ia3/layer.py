"""The IA3 rescaling vector, usable as an input or an output transform of an `AdaptedLinear`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class IA3Vector(nn.Module):
    """Multiplies the last dimension of its input by a learned vector on `span` (ones elsewhere).

    The vector starts at one, so a fresh model computes what the base model does. Outside the span
    (the other roles of a fused projection) the scale is one, built without in-place ops so that
    autograd can keep the tensors it saved.
    """

    def __init__(
        self, width: int, span: slice, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        if span.start is None or span.stop is None or not 0 <= span.start < span.stop <= width:
            raise ValueError(f"span {span} does not fit in width {width}")
        self.width = width
        self.span = span
        self.vector = nn.Parameter(torch.ones(span.stop - span.start, device=device, dtype=dtype))

    def forward(self, t: Tensor) -> Tensor:
        scale = self.vector.to(t.dtype)
        if self.span.start != 0 or self.span.stop != self.width:
            scale = F.pad(scale, (self.span.start, self.width - self.span.stop), value=1.0)
        return t * scale

    def extra_repr(self) -> str:
        return f"width={self.width}, span=[{self.span.start}:{self.span.stop}]"
