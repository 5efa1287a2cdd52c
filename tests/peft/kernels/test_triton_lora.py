"""The fused Triton LoRA forward against its torch reference.

On CPU the kernel runs under the Triton interpreter in a subprocess: triton reads ``TRITON_INTERPRET``
when ``@triton.jit`` runs, so setting it in this process would turn every later kernel of the test
session into an interpreted one. The subprocess runs this file as a script (`_main`). On CUDA the
tests marked ``gpu`` run the compiled kernel.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autopeft.peft.kernels import triton_lora
from autopeft.peft.kernels.triton_lora import (
    MAX_RANK,
    is_available,
    lora_forward_add_,
    lora_forward_add_reference,
)

REPO = Path(__file__).resolve().parents[3]
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_cuda_triton = pytest.mark.skipif(not is_available(), reason="needs CUDA and triton")
SKIP_EXIT = 3  # the interpreter subprocess exits with this when its triton cannot run the kernel

# (T, in, out, r, out_total, first column of the y slice); T is never a multiple of the row block (16),
# and the last case takes three column and three feature tiles (256 wide).
INTERPRETER_CASES = [
    (37, 48, 40, 1, 40, 0),
    (5, 32, 24, 4, 60, 20),
    (70, 100, 130, 8, 150, 7),
    (33, 64, 64, 16, 192, 64),
    (20, 600, 520, 8, 600, 40),
]
GPU_CASES = [
    (1000, 512, 768, 1, 768, 0),
    (257, 384, 384, 8, 1152, 384),
    (1031, 1024, 700, 16, 2100, 1400),
    (64, 4096, 4096, 64, 4096, 0),
]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _inputs(case: tuple[int, ...], dtype: torch.dtype, device: str, seed: int = 0):
    tokens, features, out, rank, out_total, col0 = case
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * std).to(device=device, dtype=dtype)

    x = rand(tokens, features + 3)[:, 1 : features + 1]  # a non-contiguous x, too
    a = rand(rank, features, std=features**-0.5)
    b = rand(out, rank, std=rank**-0.5)
    y_full = rand(tokens, out_total)
    return y_full, (col0, col0 + out), x, a, b


def _compare(case: tuple[int, ...], dtype: torch.dtype, device: str) -> str | None:
    """Run the kernel and the reference on the same inputs; the failure as a line, or None."""
    y_full, (lo, hi), x, a, b = _inputs(case, dtype, device)
    y_ref_full = y_full.clone()
    if not triton_lora._kernel_applies(y_full[:, lo:hi], x, a, b):
        return f"{case} {dtype}: the kernel cannot take these tensors"
    h = triton_lora._launch(y_full[:, lo:hi], x, a, b, 0.75)
    h_ref = lora_forward_add_reference(y_ref_full[:, lo:hi], x, a, b, 0.75)
    tol = TOLERANCE[dtype]
    for name, got, want in (("h", h, h_ref), ("y", y_full, y_ref_full)):
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"{case} {dtype}: {name} is {got.shape} {got.dtype}, want {want.shape} {want.dtype}"
        if not torch.allclose(got.float(), want.float(), rtol=tol, atol=tol):
            err = (got.float() - want.float()).abs().max().item()
            return f"{case} {dtype}: {name} differs by up to {err:.3g} (tolerance {tol})"
    return None


def _interpreter_runs_loops() -> bool:
    """Triton 3.6's interpreter cannot take a runtime loop bound with numpy >= 2.4 (it calls int() on a
    1-element array); later triton squeezes it first."""
    import triton
    import triton.language as tl

    @triton.jit
    def count(out_ptr, n):
        total = 0
        for _ in range(0, n, 1):
            total += 1
        tl.store(out_ptr, total)

    out = torch.zeros(1, dtype=torch.int32)
    try:
        count[(1,)](out, 3)
    except Exception:
        return False
    return int(out.item()) == 3


def _main() -> int:
    """Interpreter run (``TRITON_INTERPRET=1``): fp32 and fp16 cases on CPU; prints failures."""
    if not _interpreter_runs_loops():
        print("this triton's interpreter cannot run a loop over a runtime bound")
        return SKIP_EXIT
    # The interpreter's tl.dot multiplies bf16 as the raw uint16 it stores them in (triton 3.9), so
    # bf16 is checked on the GPU only.
    failures = [
        msg
        for dtype in (torch.float32, torch.float16)
        for case in INTERPRETER_CASES
        if (msg := _compare(case, dtype, "cpu")) is not None
    ]
    print("\n".join(failures) or f"{2 * len(INTERPRETER_CASES)} cases agree")
    return 1 if failures else 0


def _run_script(code: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, **extra_env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install 'autopeft[triton]')")
def test_kernel_matches_reference_under_interpreter() -> None:
    code = f"import runpy, sys; sys.exit(runpy.run_path({str(Path(__file__))!r})['_main']())"
    done = _run_script(code, {"TRITON_INTERPRET": "1"})
    if done.returncode == SKIP_EXIT:
        pytest.skip(f"{done.stdout.strip()} (numpy >= 2.4 needs a triton newer than 3.6; 3.9 works)")
    assert done.returncode == 0, done.stdout + done.stderr


def test_module_imports_and_falls_back_without_triton() -> None:
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from autopeft.peft.kernels.triton_lora import is_available, lora_forward_add_\n"
        "assert not is_available()\n"
        "y = torch.zeros(3, 2)\n"
        "h = lora_forward_add_(y, torch.ones(3, 4), torch.ones(1, 4), torch.ones(2, 1), 0.5)\n"
        "assert torch.equal(h, torch.full((3, 1), 4.0)) and torch.equal(y, torch.full((3, 2), 2.0))\n"
    )
    done = _run_script(code, {"TRITON_INTERPRET": "0"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_reference_is_the_lora_formula_on_a_slice() -> None:
    y_full, (lo, hi), x, a, b = _inputs((9, 12, 10, 4, 25, 6), torch.float64, "cpu")
    want = y_full.clone()
    want[:, lo:hi] += 0.5 * (x @ a.T) @ b.T
    h = lora_forward_add_reference(y_full[:, lo:hi], x, a, b, 0.5)
    torch.testing.assert_close(h, x @ a.T)
    torch.testing.assert_close(y_full, want)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_not_available_without_cuda() -> None:
    assert is_available() is False


def test_cpu_tensors_go_through_the_reference() -> None:
    y_full, _, x, a, b = _inputs((7, 8, 6, 2, 6, 0), torch.float32, "cpu")
    want = y_full.clone()
    h_ref = lora_forward_add_reference(want, x, a, b, 2.0)
    h = lora_forward_add_(y_full, x, a, b, 2.0)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(y_full, want)


def test_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="shapes do not fit"):
        lora_forward_add_(torch.zeros(3, 5), torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(6, 2), 1.0)


@pytest.mark.gpu
@needs_cuda_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", GPU_CASES + INTERPRETER_CASES, ids=str)
def test_kernel_matches_reference_on_gpu(case: tuple[int, ...], dtype: torch.dtype) -> None:
    assert torch.get_float32_matmul_precision() == "highest"
    assert _compare(case, dtype, "cuda") is None


@pytest.mark.gpu
@needs_cuda_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_public_entry_matches_reference_on_gpu(dtype: torch.dtype) -> None:
    y_full, (lo, hi), x, a, b = _inputs((300, 512, 256, 8, 512, 256), dtype, "cuda")
    want = y_full.clone()
    h = lora_forward_add_(y_full[:, lo:hi], x, a, b, 0.5)
    h_ref = lora_forward_add_reference(want[:, lo:hi], x, a, b, 0.5)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(h, h_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(y_full, want, rtol=tol, atol=tol)
    assert triton_lora._kernel_is_faster(x) == (dtype != torch.float32)  # IEEE fp32 goes to cuBLAS


@pytest.mark.gpu
@needs_cuda_triton
def test_tf32_follows_torch_matmul_precision() -> None:
    torch.set_float32_matmul_precision("high")
    try:
        y_full, _, x, a, b = _inputs((300, 512, 256, 8, 256, 0), torch.float32, "cuda")
        want = y_full.clone()
        assert triton_lora._kernel_is_faster(x)  # TF32 allowed: the kernel runs
        h = lora_forward_add_(y_full, x, a, b, 1.0)
        h_ref = lora_forward_add_reference(want, x, a, b, 1.0)
    finally:
        torch.set_float32_matmul_precision("highest")
    torch.testing.assert_close(h, h_ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y_full, want, rtol=1e-2, atol=1e-2)


@pytest.mark.gpu
@needs_cuda_triton
@pytest.mark.parametrize("tokens, rank", [(0, 8), (16, MAX_RANK + 1)])
def test_empty_input_and_large_rank_on_gpu(tokens: int, rank: int) -> None:
    y_full, _, x, a, b = _inputs((tokens, 64, 48, rank, 48, 0), torch.bfloat16, "cuda")
    want = y_full.clone()
    h = lora_forward_add_(y_full, x, a, b, 1.0)
    h_ref = lora_forward_add_reference(want, x, a, b, 1.0)
    assert h.shape == (tokens, rank)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(y_full, want)
