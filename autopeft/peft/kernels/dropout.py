"""Dropout with a cheaper random source on the CPU.

`torch.nn.functional.dropout` on the CPU draws one float per element with `bernoulli_`, which takes
about a sixth of a MiniLM training step (see ../shared/BENCHMARKS.md). Here the keep mask comes from
16 random bits per element, drawn 64 at a time with `random_`/`randint` on int64 (one generator call per
four elements, ~3x faster end to end). The drop probability is rounded to a multiple of 1/65536
(0.1 -> 0.1000061) and the kept values are scaled by the exact inverse of the keep probability, so the
expectation is preserved exactly. Same seed, same masks; on CUDA (where torch's fused Philox dropout is
already fast) it defers to `F.dropout`.

torch offers no faster CPU dropout and `torch.compile` costs minutes of warm-up per trial on this kind
of machine, which is why this is written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Drop each element with probability ~`p` (rounded to 1/65536) and scale the rest to keep the mean."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    threshold = round(p * _LEVELS)
    if threshold == 0:
        return x
    words = (x.numel() + 3) // 4
    bits = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64, device=x.device)
    draws = bits.view(torch.int16)[: x.numel()].view(x.shape)  # uniform over [-32768, 32767]
    keep = draws >= threshold - _LEVELS // 2
    scale = _LEVELS / (_LEVELS - threshold)
    return x.mul(keep).mul_(scale)  # one new tensor; autograd keeps only the mask


class FastDropout(nn.Dropout):
    """Drop-in for `nn.Dropout` using `fast_dropout` (same `p`, same eval behaviour)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every `nn.Dropout` in `model` by `FastDropout`; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = FastDropout(child.p, inplace=False)
                replacement.train(child.training)  # keep the model's current mode
                setattr(parent, name, replacement)
                replaced += 1
    return replaced
