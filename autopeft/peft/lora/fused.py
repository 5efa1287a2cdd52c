"""The LoRA update `y[..., out] += scale * dropout(x) @ A.T @ B.T`, fused and in place.

Why fused: the plain form (`y + (x @ A.T @ B.T) * scale`) writes a second (tokens, out) tensor, and
autograd keeps the dropped-out copy of `x` alive until backward. `LoraAddFunction` adds the low-rank
path straight into the base output (`addmm_` into a 2-D view of `y`, only on the output slice a role
owns in a fused projection) and saves only what its backward reads: `x` itself (the same storage the
base projection already holds, never a copy), `A`, `B`, the small `h = dropout(x) @ A.T` (tokens, r),
and, only when dropout is on, a one-byte keep mask from which backward rebuilds `dropout(x)`.

`lora_reference` is the straightforward out-of-place version: the tests compare against it and
`LoraDelta(fused=False)` runs it.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.cache
def _triton_module() -> ModuleType | None:
    """`autopeft.peft.kernels.triton_lora` when it imports and triton with CUDA is there, else None.

    Looked up on first CUDA use only, so the CPU path never imports triton.
    """
    try:
        from autopeft.peft.kernels import triton_lora
    except Exception:  # a missing or broken kernel module must never break the torch path
        return None
    try:
        return triton_lora if triton_lora.is_available() else None
    except Exception:
        return None


def _forward_add_(y2d: Tensor, x2d: Tensor, a: Tensor, b: Tensor, scale: float) -> Tensor:
    """`y2d += scale * (x2d @ a.T) @ b.T` in place; returns `h = x2d @ a.T` (Triton kernel on CUDA)."""
    if y2d.is_cuda:
        kernel = _triton_module()
        if kernel is not None:
            h: Tensor = kernel.lora_forward_add_(y2d, x2d, a, b, scale)
            return h
    h = x2d @ a.t()
    y2d.addmm_(h, b.t(), alpha=scale)
    return h


def _slice_2d(t: Tensor, out_slice: slice) -> Tensor:
    """A (tokens, slice width) view of `t` (..., out) that shares its storage."""
    return t.view(-1, t.shape[-1])[:, out_slice]


def _dropout_with_mask(x2d: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """`dropout(x2d)` and its boolean keep mask, drawn the way `F.dropout` draws them."""
    out, mask = torch.native_dropout(x2d, p, True)
    return out, mask


def _masked(t: Tensor, mask: Tensor, keep_scale: float) -> Tensor:
    """`t * mask * keep_scale` in one pass (the kernel behind dropout's own backward)."""
    out: Tensor = torch.ops.aten.native_dropout_backward(t, mask, keep_scale)
    return out


class LoraAddFunction(torch.autograd.Function):
    """Adds `scale * dropout(x) @ A.T @ B.T` into `y[..., out_slice]` in place (`ctx.mark_dirty`).

    The base weight is frozen and never seen here; the base path's gradient into `x` flows through the
    base projection itself, so backward adds only the LoRA part of `grad_x`, and only when `x` needs one.
    """

    @staticmethod
    def forward(
        ctx: Any, y: Tensor, x: Tensor, a: Tensor, b: Tensor, scale: float, p: float, out_slice: slice
    ) -> Tensor:
        x2d = x.reshape(-1, x.shape[-1])
        mask: Tensor | None = None
        xd = x2d
        if p > 0.0:
            xd, mask = _dropout_with_mask(x2d, p)
        h = _forward_add_(_slice_2d(y, out_slice), xd, a, b, scale)
        ctx.mark_dirty(y)
        # `x` is saved as given (shared with the base projection's saved input); with dropout the mask
        # (1 byte an element) is kept instead of a full dropped-out copy.
        ctx.save_for_backward(x, a, b, h, mask)
        ctx.scale, ctx.p, ctx.out_slice = scale, p, out_slice
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        x, a, b, h, mask = ctx.saved_tensors
        need_y, need_x, need_a, need_b = ctx.needs_input_grad[:4]
        g = _slice_2d(grad_y.contiguous(), ctx.out_slice)  # (T, o)
        keep_scale = 1.0 / (1.0 - ctx.p) if ctx.p > 0.0 else 1.0
        grad_x = grad_a = grad_b = None
        if need_b:
            grad_b = (g.t() @ h).mul_(ctx.scale)  # (o, r)
        if need_a or need_x:
            gh = (g @ b).mul_(ctx.scale)  # (T, r): gradient of h
            if need_a:
                x2d = x.reshape(-1, x.shape[-1])
                xd = x2d if mask is None else _masked(x2d, mask, keep_scale)
                grad_a = gh.t() @ xd  # (r, in)
            if need_x:
                gx = gh @ a  # (T, in)
                if mask is not None:
                    gx = _masked(gx, mask, keep_scale)
                grad_x = gx.view(x.shape)
        return (grad_y if need_y else None), grad_x, grad_a, grad_b, None, None, None


def lora_add_(
    y: Tensor, x: Tensor, a: Tensor, b: Tensor, scale: float, *,
    dropout: float = 0.0, training: bool = True, out_slice: slice | None = None,
) -> Tensor:
    """Fused LoRA: add the update into `y` in place and return `y`.

    `y` (..., out) must be contiguous (a base projection's output is); `x` is (..., in), `a` (r, in),
    `b` (slice width, r), all of `y`'s dtype.
    """
    sl = out_slice if out_slice is not None else slice(0, y.shape[-1])
    p = dropout if training else 0.0
    if torch.is_grad_enabled() and (y.requires_grad or x.requires_grad or a.requires_grad or b.requires_grad):
        out: Tensor = LoraAddFunction.apply(y, x, a, b, scale, p, sl)
        return out
    x2d = x.reshape(-1, x.shape[-1])
    if p > 0.0:
        x2d = F.dropout(x2d, p, True)
    _forward_add_(_slice_2d(y, sl), x2d, a, b, scale)
    return y


def add_to_slice(y: Tensor, delta: Tensor, out_slice: slice | None) -> Tensor:
    """`y` with `delta` added on `y[..., out_slice]`, out of place (a new tensor; `y` is untouched)."""
    if out_slice is None or (out_slice.start in (0, None) and out_slice.stop in (None, y.shape[-1])):
        return y + delta
    start, stop = out_slice.start, out_slice.stop
    return torch.cat([y[..., :start], y[..., start:stop] + delta, y[..., stop:]], dim=-1)


def lora_reference(
    y: Tensor, x: Tensor, a: Tensor, b: Tensor, scale: float, *,
    dropout: float = 0.0, training: bool = True, out_slice: slice | None = None,
) -> Tensor:
    """Plain LoRA, out of place, as `peft` writes it: `y + B(A(dropout(x))) * scale` on the slice."""
    xd = F.dropout(x, dropout, training) if dropout > 0.0 else x
    return add_to_slice(y, (xd @ a.t()) @ b.t() * scale, out_slice)
