"""The fused in-place LoRA Function against the plain reference: values, gradients, saved tensors."""

from __future__ import annotations

import pytest
import torch

from autopeft.peft.lora.fused import LoraAddFunction, lora_add_, lora_reference

IN, OUT, R, SCALE = 12, 24, 3, 1.7
SLICES = [None, slice(8, 16)]




def _tensors(
        dtype: torch.dtype = torch.float64, seed: int = 0, x_grad: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return {
        "y0": rand(2, 5, OUT).requires_grad_(True),
        "x": rand(2, 5, IN).requires_grad_(x_grad),
        "a": rand(R, IN).requires_grad_(True),
        "b_full": rand(OUT, R),
    }


def _b(t: dict[str, torch.Tensor], out_slice: slice | None) -> torch.Tensor:
    b = t["b_full"] if out_slice is None else t["b_full"][: out_slice.stop - out_slice.start]
    return b.clone().requires_grad_(True)


def _run(fn, t, b, out_slice, **kw):
    """Output and gradients of (y0, x, a, b) for a fixed random upstream gradient."""
    y = t["y0"] * 1.0  # a non-leaf, as a base projection's output is
    out = fn(y, t["x"], t["a"], b, SCALE, out_slice=out_slice, **kw)
    gen = torch.Generator().manual_seed(7)
    upstream = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
    inputs = [t["y0"], t["a"], b] + ([t["x"]] if t["x"].requires_grad else [])
    grads = torch.autograd.grad(out, inputs, upstream)
    return out.detach(), grads


@pytest.mark.parametrize("out_slice", SLICES, ids=["full", "slice"])
@pytest.mark.parametrize(("x_grad", "dtype"), [(True, torch.float64), (False, torch.float64), (True, torch.float32)],
                         ids=["x_grad", "x_frozen", "float32"])
def test_fused_matches_reference(out_slice: slice | None, x_grad: bool, dtype: torch.dtype) -> None:
    t = {k: v.detach().to(dtype).requires_grad_(v.requires_grad) for k, v in _tensors(x_grad=x_grad).items()}
    b = _b(t, out_slice)
    out_f, grads_f = _run(lora_add_, t, b, out_slice)
    out_r, grads_r = _run(lora_reference, t, b, out_slice)
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads_f, grads_r, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out_slice", SLICES, ids=["full", "slice"])
def test_dropout_with_the_same_seed_matches_reference(out_slice: slice | None) -> None:
    t = _tensors()
    b = _b(t, out_slice)
    torch.manual_seed(3)
    out_f, grads_f = _run(lora_add_, t, b, out_slice, dropout=0.4)
    torch.manual_seed(3)
    out_r, grads_r = _run(lora_reference, t, b, out_slice, dropout=0.4)
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads_f, grads_r, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_dropout_saved_mask_is_the_one_used() -> None:
    """What backward keeps (x, mask, h) rebuilds exactly the forward's dropped-out input and output."""
    p, sl = 0.5, slice(8, 16)
    t = _tensors()
    b = _b(t, sl)
    y = t["y0"] * 1.0
    out = lora_add_(y, t["x"], t["a"], b, SCALE, dropout=p, out_slice=sl)
    x_saved, _, _, h, mask = out.grad_fn.saved_tensors  # type: ignore[union-attr]
    assert x_saved.data_ptr() == t["x"].data_ptr()  # the input itself, no dropped-out copy
    assert mask.dtype == torch.bool and 0 < mask.float().mean() < 1
    xd = t["x"].reshape(-1, IN) * mask / (1 - p)
    torch.testing.assert_close(h, xd @ t["a"].t())
    expected = t["y0"].detach().clone()
    expected[..., sl] += SCALE * (h @ b.t()).view(2, 5, -1)
    torch.testing.assert_close(out.detach(), expected)
    g = torch.randn(out.shape, dtype=out.dtype)
    gx, ga, gb = torch.autograd.grad(out, [t["x"], t["a"], b], g)
    g_sl = g.reshape(-1, OUT)[:, sl]
    gh = SCALE * g_sl @ b.detach()
    torch.testing.assert_close(gb, SCALE * g_sl.t() @ h)
    torch.testing.assert_close(ga, gh.t() @ xd)
    torch.testing.assert_close(gx, ((gh @ t["a"].detach()) * mask / (1 - p)).view_as(gx))


def test_no_dropout_saves_no_copy_and_updates_in_place() -> None:
    t = _tensors()
    b = _b(t, None)
    y = t["y0"] * 1.0
    version = y._version
    out = lora_add_(y, t["x"], t["a"], b, SCALE)
    assert out is y and y._version > version
    x_saved, _, _, h, mask = out.grad_fn.saved_tensors  # type: ignore[union-attr]
    assert mask is None and x_saved.data_ptr() == t["x"].data_ptr() and h.shape == (10, R)
    assert out.grad_fn is not None and "LoraAddFunction" in type(out.grad_fn).__name__


def test_eval_and_no_grad_paths_match_reference() -> None:
    t = _tensors()
    b = _b(t, slice(8, 16))
    with torch.no_grad():
        got = lora_add_(t["y0"].clone(), t["x"], t["a"], b, SCALE, dropout=0.5, training=False,
                        out_slice=slice(8, 16))
        want = lora_reference(t["y0"], t["x"], t["a"], b, SCALE, dropout=0.5, training=False,
                              out_slice=slice(8, 16))
    torch.testing.assert_close(got, want)


def test_in_place_on_a_view_of_the_base_output() -> None:
    """GPT-2's Conv1D returns `addmm(...).view(...)`: the Function must update such views correctly."""
    t = _tensors()
    b = _b(t, slice(8, 16))
    w = torch.randn(IN, OUT, dtype=torch.float64)

    def base_then_lora(fn):
        y = torch.addmm(t["y0"][0, 0], t["x"].view(-1, IN), w).view(2, 5, OUT)
        out = fn(y, t["x"], t["a"], b, SCALE, out_slice=slice(8, 16))
        return torch.autograd.grad(out.pow(2).sum(), [t["x"], t["a"], b, t["y0"]])

    for got, want in zip(base_then_lora(lora_add_), base_then_lora(lora_reference), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("out_slice", SLICES, ids=["full", "slice"])
def test_gradcheck(out_slice: slice | None, dropout: float) -> None:
    t = _tensors()
    b = _b(t, out_slice)
    sl = out_slice if out_slice is not None else slice(0, OUT)

    def fn(y0: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng():
            torch.manual_seed(11)  # the same mask on every evaluation
            out: torch.Tensor = LoraAddFunction.apply(y0.clone(), x, a, b, SCALE, dropout, sl)
        return out

    small = (t["y0"][:1, :3].detach().requires_grad_(True), t["x"][:1, :3].detach().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, (*small, t["a"], b))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_matches_reference(dtype: torch.dtype) -> None:
    """On CUDA the forward runs the Triton kernel when it is there; values and gradients still match."""
    t = {k: v.detach().to("cuda", dtype).requires_grad_(v.requires_grad) for k, v in _tensors().items()}
    sl = slice(8, 16)
    b = _b(t, sl)
    out_f, grads_f = _run(lora_add_, t, b, sl)
    out_r, grads_r = _run(lora_reference, t, b, sl)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out_f, out_r, rtol=tol, atol=tol)
    for got, want in zip(grads_f, grads_r, strict=True):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
