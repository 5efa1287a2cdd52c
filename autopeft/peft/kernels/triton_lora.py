"""Fused LoRA forward on CUDA in Triton: ``y += scale * (x @ A.T) @ B.T`` in one kernel.

The LoRA branch is two skinny matrix products around a rank ``r`` of 1..64. Done with two torch
calls (``h = x @ A.T``, then ``y.addmm_(h, B.T)``), it is two kernel launches, each a GEMM whose
small dimension (``r``) fits cuBLAS's tiles badly, and a naive ``y = y + scale * (h @ B.T)`` also
writes and re-reads a whole (T, out) temporary. Both products are memory-bound: the work is reading
``x`` once and reading and writing ``y`` once. The fused kernel does exactly that pass: each program
takes a block of rows of ``x``, builds the (BLOCK_T, r) tile of ``h`` in registers (fp32
accumulation), writes ``h`` once (backward needs it), then walks the output columns, loading each
``y`` tile, adding ``scale * h @ B.T`` and storing it in place. On an H100 (T=in=out=4096) it beats
the naive form by about 2x and the two torch calls by about 10% in bf16 and TF32
(benchmarks/gpu_lora_kernel.py). IEEE fp32 is the exception: Triton has no tensor-core path for it,
so `lora_forward_add_` hands it to cuBLAS.

Triton is imported lazily: this module imports, and `lora_forward_add_` still works (through the
torch reference), on machines without triton or CUDA. Under ``TRITON_INTERPRET=1`` (set before triton
is first imported) the kernel also runs on CPU tensors, which is how the tests check it without a GPU.
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = ["MAX_RANK", "is_available", "lora_forward_add_", "lora_forward_add_reference"]

MAX_RANK = 64
"""Largest rank the kernel takes; above it `lora_forward_add_` runs the torch reference."""

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def lora_forward_add_reference(y2d: Tensor, x2d: Tensor, a: Tensor, b: Tensor, scale: float) -> Tensor:
    """The torch path: ``h = x2d @ a.T``, then ``y2d += scale * h @ b.T`` in place; returns ``h``."""
    h = x2d @ a.t()
    y2d.addmm_(h, b.t(), alpha=scale)
    return h


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def is_available() -> bool:
    """True when triton imports and a CUDA device is present."""
    return _triton_importable() and torch.cuda.is_available()


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _kernel_applies(y2d: Tensor, x2d: Tensor, a: Tensor, b: Tensor) -> bool:
    """Whether the kernel can run on these tensors: all on CUDA (or CPU under the interpreter), one
    supported dtype, a rank up to `MAX_RANK`."""
    tensors = (y2d, x2d, a, b)
    on_cpu = all(t.device.type == "cpu" for t in tensors)
    on_device = all(t.is_cuda for t in tensors) or (_interpreting() and on_cpu)
    return (
        on_device
        and _triton_importable()
        and x2d.dtype in _DTYPES
        and all(t.dtype == x2d.dtype for t in tensors)
        and 1 <= a.shape[0] <= MAX_RANK
    )


def _check_shapes(y2d: Tensor, x2d: Tensor, a: Tensor, b: Tensor) -> None:
    if not (x2d.dim() == a.dim() == b.dim() == y2d.dim() == 2):
        raise ValueError("lora_forward_add_ takes 2-D tensors y2d (T, out), x2d (T, in), a (r, in), b (out, r)")
    tokens, features = x2d.shape
    rank = a.shape[0]
    if a.shape[1] != features or b.shape[1] != rank or y2d.shape != (tokens, b.shape[0]):
        raise ValueError(
            f"shapes do not fit: y2d {tuple(y2d.shape)}, x2d {tuple(x2d.shape)}, a {tuple(a.shape)}, "
            f"b {tuple(b.shape)}; expected y2d (T, out), x2d (T, in), a (r, in), b (out, r)"
        )


class LaunchConfig(NamedTuple):
    """Tile sizes and launch settings; `block_t` rows of x per program."""

    block_t: int
    block_k: int
    block_n: int
    num_warps: int
    num_stages: int


def default_config(features: int, out: int, dtype: torch.dtype) -> LaunchConfig:
    """Tiles from a sweep on an H100 (benchmarks/gpu_lora_kernel.py --sweep, T=in=out=4096, r=16).

    16-row blocks give 256 programs at T=4096, so every SM stays busy; wide feature and column tiles
    (512 in 16-bit, 256 in fp32, the best of each) keep many loads in flight per program; narrower
    layers get tiles no wider than they are.
    """
    widest = 256 if dtype == torch.float32 else 512
    block_k = min(widest, max(16, 1 << (features - 1).bit_length()))
    block_n = min(widest, max(16, 1 << (out - 1).bit_length()))
    return LaunchConfig(block_t=16, block_k=block_k, block_n=block_n, num_warps=4, num_stages=3)


def _kernel_is_faster(x2d: Tensor) -> bool:
    """False for IEEE fp32 on CUDA: Triton runs IEEE fp32 ``tl.dot`` on CUDA cores, not tensor cores,
    and measured about 2.2x slower there than cuBLAS's ``x @ a.T`` + ``addmm_`` (H100, T=in=out=4096)."""
    return not (x2d.is_cuda and x2d.dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest")


def lora_forward_add_(y2d: Tensor, x2d: Tensor, a: Tensor, b: Tensor, scale: float) -> Tensor:
    """``h = x2d @ a.T``; ``y2d += scale * h @ b.T`` in place; returns ``h`` (T, r), for backward.

    ``x2d`` is (T, in), ``a`` (r, in), ``b`` (out, r), ``y2d`` (T, out) and may be a column slice of a
    wider tensor (any strides). bf16 and fp16 run the fused kernel, accumulating in fp32, and so does
    fp32 when ``torch.get_float32_matmul_precision()`` allows TF32 ("high", "medium"). Everything else
    goes through `lora_forward_add_reference`: IEEE fp32 on CUDA (cuBLAS is faster, see
    `_kernel_is_faster`), CPU tensors, mixed or other dtypes, ranks above `MAX_RANK`.
    """
    _check_shapes(y2d, x2d, a, b)
    if not (_kernel_applies(y2d, x2d, a, b) and _kernel_is_faster(x2d)):
        return lora_forward_add_reference(y2d, x2d, a, b, scale)
    return _launch(y2d, x2d, a, b, scale)


def _launch(
    y2d: Tensor,
    x2d: Tensor,
    a: Tensor,
    b: Tensor,
    scale: float,
    config: LaunchConfig | None = None,
) -> Tensor:
    """Run the kernel (no dispatch); fp32 products are IEEE or TF32 as torch's matmul precision says."""
    tokens, features = x2d.shape
    rank, out = a.shape[0], b.shape[0]
    config = config or default_config(features, out, x2d.dtype)
    h = torch.empty((tokens, rank), dtype=x2d.dtype, device=x2d.device)
    if tokens == 0 or out == 0:
        return h
    rank_pad = max(16, 1 << (rank - 1).bit_length())  # tl.dot wants power-of-two sides of at least 16
    tf32 = x2d.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest"
    precision = "tf32" if tf32 else "ieee"
    grid = ((tokens + config.block_t - 1) // config.block_t,)
    _kernel()[grid](
        x2d, a, b, y2d, h,
        tokens, features, out, rank, float(scale),
        x2d.stride(0), x2d.stride(1), a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        y2d.stride(0), y2d.stride(1), h.stride(0),
        BLOCK_T=config.block_t, BLOCK_K=config.block_k, BLOCK_N=config.block_n, R_PAD=rank_pad,
        PRECISION=precision, num_warps=config.num_warps, num_stages=config.num_stages,
    )  # fmt: skip
    return h


@functools.cache
def _kernel() -> Any:
    """Build the kernel on first use, so that importing this module never imports triton."""
    import triton
    import triton.language as tl

    @triton.jit
    def lora_fwd_kernel(
        x_ptr, a_ptr, b_ptr, y_ptr, h_ptr,
        T, K, N, R, scale,
        sxt, sxk, sar, sak, sbn, sbr, syt, syn, sht,
        BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, R_PAD: tl.constexpr,
        PRECISION: tl.constexpr,
    ):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        row_ok = rows < T
        rows64 = rows.to(tl.int64)  # row offsets of large tensors overflow int32
        ranks = tl.arange(0, R_PAD)
        rank_ok = ranks < R

        # h = x @ a.T for this block of rows, accumulated in fp32 registers.
        acc = tl.zeros((BLOCK_T, R_PAD), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < K
            x = tl.load(x_ptr + rows64[:, None] * sxt + ks[None, :] * sxk,
                        mask=row_ok[:, None] & k_ok[None, :], other=0.0)  # fmt: skip
            a_t = tl.load(a_ptr + ranks[None, :] * sar + ks[:, None] * sak,
                          mask=k_ok[:, None] & rank_ok[None, :], other=0.0)  # fmt: skip
            acc = tl.dot(x, a_t, acc, input_precision=PRECISION)
        h = acc.to(h_ptr.dtype.element_ty)  # rounded as torch's x @ a.T is, before the second product
        tl.store(h_ptr + rows64[:, None] * sht + ranks[None, :], h, mask=row_ok[:, None] & rank_ok[None, :])

        # y += scale * h @ b.T, one column tile at a time: each y element is read and written once.
        for n0 in range(0, N, BLOCK_N):
            cols = n0 + tl.arange(0, BLOCK_N)
            col_ok = cols < N
            b_t = tl.load(b_ptr + ranks[:, None] * sbr + cols[None, :] * sbn,
                          mask=rank_ok[:, None] & col_ok[None, :], other=0.0)  # fmt: skip
            y_ptrs = y_ptr + rows64[:, None] * syt + cols[None, :] * syn
            y_ok = row_ok[:, None] & col_ok[None, :]
            y = tl.load(y_ptrs, mask=y_ok, other=0.0).to(tl.float32)
            y += scale * tl.dot(h, b_t, input_precision=PRECISION)
            tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=y_ok)

    return lora_fwd_kernel
