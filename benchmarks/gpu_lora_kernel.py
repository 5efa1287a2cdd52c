"""The fused Triton LoRA forward against the torch path, on one CUDA GPU.

Work timed (all in place on the same tensors, interleaved ours, peer, peer, ours, ...):
- ``ours``: `autopeft.peft.kernels.triton_lora.lora_forward_add_`, which runs the fused kernel except
  for IEEE fp32 on CUDA, where it calls the torch path (cuBLAS is faster there);
- ``triton_kernel``: the fused kernel itself, in every case (its default tiles);
- ``torch_addmm``: ``h = x @ a.T`` then ``y.addmm_(h, b.T, alpha=scale)``, the torch reference and the
  strongest ordinary torch form (no temporary of y's size). **The ratio we are judged on.**
- ``torch_naive``: ``y += scale * ((x @ a.T) @ b.T)``, what most LoRA code writes.

Full settings (default): T=4096 tokens, in=out=4096 (a Llama-7B projection), r=8 and 16, bf16 and
fp32 (IEEE fp32, torch's default matmul precision "highest"), plus fp32 with TF32 on both sides
("high"), fp16 r=16, and a bf16 case whose y is a column slice of a fused qkv output (T, 3*4096).
100 repetitions of 10 back-to-back calls each, timed with CUDA events after 5 warm-up calls; median and min-max per
call. ``--quick``: T=in=out=1024, 5 repetitions. ``--sweep`` also times a grid of tile sizes
(r=16; bf16, and fp32 with TF32) and prints the best. Before timing, each case checks that the
kernel's y and h agree with the reference on fresh inputs. Without CUDA the script says so and exits.

    python benchmarks/gpu_lora_kernel.py [--quick] [--sweep] [--out benchmarks/results/gpu_lora_kernel.json]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autopeft.peft.kernels import triton_lora

SCALE = 2.0
TOLERANCE = {"highest": {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 3e-2}, "high": {torch.float32: 1e-2}}
Shape = tuple[int, int, int, int, int]  # T, in, out, r, columns of the tensor y is a slice of
Tensor = torch.Tensor


def make_inputs(shape: Shape, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    tokens, features, out, rank, out_total = shape
    gen = torch.Generator(device="cuda").manual_seed(0)

    def rand(*size: int, std: float) -> Tensor:
        return (torch.randn(*size, generator=gen, device="cuda") * std).to(dtype)

    x = rand(tokens, features, std=1.0)
    a = rand(rank, features, std=features**-0.5)
    b = rand(out, rank, std=0.02)
    y_full = rand(tokens, out_total, std=1.0)
    return y_full, y_full[:, :out], x, a, b


def torch_naive(y: Tensor, x: Tensor, a: Tensor, b: Tensor, scale: float) -> Tensor:
    h = x @ a.T
    y += scale * (h @ b.T)
    return h


IMPLS: dict[str, Callable[..., Tensor]] = {
    "ours": triton_lora.lora_forward_add_,
    "triton_kernel": triton_lora._launch,
    "torch_addmm": triton_lora.lora_forward_add_reference,
    "torch_naive": torch_naive,
}


def time_calls(fn: Callable[[], object], inner: int) -> float:
    """Milliseconds per call of `inner` back-to-back calls, by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / inner


def summary(samples: list[float], moved_bytes: int) -> dict[str, float]:
    median = statistics.median(samples)
    gb_per_s = moved_bytes / median / 1e6
    return {"median_ms": median, "min_ms": min(samples), "max_ms": max(samples), "gb_per_s": gb_per_s}


def copy_bandwidth() -> float:
    """Device-to-device copy rate (GB/s, bytes read + written) of a 1 GiB buffer: the roof here."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    ms = statistics.median(time_calls(lambda: dst.copy_(src), 5) for _ in range(5))
    return 2 * src.numel() / ms / 1e6


def check_case(shape: Shape, dtype: torch.dtype) -> dict[str, Any]:
    y_full, y, x, a, b = make_inputs(shape, dtype)
    y_ref_full = y_full.clone()
    h = triton_lora._launch(y, x, a, b, SCALE)
    h_ref = triton_lora.lora_forward_add_reference(y_ref_full[:, : y.shape[1]], x, a, b, SCALE)
    err_y = (y_full.float() - y_ref_full.float()).abs().max().item()
    err_h = (h.float() - h_ref.float()).abs().max().item()
    tol = TOLERANCE[torch.get_float32_matmul_precision()][dtype]
    y_ok = err_y <= tol * max(1.0, y_ref_full.abs().max().item())
    same = y_ok and err_h <= tol * max(1.0, h_ref.abs().max().item())
    dispatch = "triton_kernel" if triton_lora._kernel_is_faster(x) else "torch_addmm"
    return {"ours_runs": dispatch, "kernel_max_abs_err_y": err_y, "kernel_max_abs_err_h": err_h, "same_result": same}


def run_case(name: str, shape: Shape, dtype: torch.dtype, reps: int, inner: int) -> dict[str, Any]:
    tokens, features, out, rank, out_total = shape
    result: dict[str, Any] = {
        "case": name,
        "dtype": str(dtype).removeprefix("torch."),
        "tokens": tokens,
        "in": features,
        "out": out,
        "rank": rank,
        "out_total": out_total,
        "fp32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    result.update(check_case(shape, dtype))
    _, y, x, a, b = make_inputs(shape, dtype)
    size = torch.finfo(dtype).bits // 8
    moved = size * (tokens * features + 2 * tokens * out + tokens * rank + rank * (features + out))
    calls = {impl: functools.partial(fn, y, x, a, b, SCALE) for impl, fn in IMPLS.items()}
    for fn in calls.values():
        for _ in range(5):
            fn()
    samples: dict[str, list[float]] = {impl: [] for impl in calls}
    order = list(calls)
    for rep in range(reps):
        for impl in order if rep % 2 == 0 else order[::-1]:
            samples[impl].append(time_calls(calls[impl], inner))
    ours = summary(samples["ours"], moved)
    result["ours"] = ours
    result["peers"] = {impl: summary(samples[impl], moved) for impl in order[1:]}
    for impl in order[1:]:
        result[f"ratio_vs_{impl}"] = result["peers"][impl]["median_ms"] / ours["median_ms"]
    return result


def sweep(dtype: torch.dtype, tokens: int, dim: int) -> list[dict[str, Any]]:
    """Time a grid of tile sizes for one shape (r=16); the rows sorted fastest first."""
    _, y, x, a, b = make_inputs((tokens, dim, dim, 16, dim), dtype)
    rows: list[dict[str, Any]] = []
    for bt, bkn, warps, stages in itertools.product((16, 32), (128, 256, 512), (4, 8), (3, 4)):
        cfg = triton_lora.LaunchConfig(bt, bkn, bkn, warps, stages)
        try:
            call = functools.partial(triton_lora._launch, y, x, a, b, SCALE, cfg)
            call()
            torch.cuda.synchronize()
            ms = statistics.median(time_calls(call, 10) for _ in range(7))
        except Exception as exc:  # out of shared memory or registers: not a candidate
            rows.append({"config": cfg._asdict(), "error": type(exc).__name__})
            continue
        rows.append({"config": cfg._asdict(), "ms": ms})
    return sorted(rows, key=lambda r: float(r.get("ms", float("inf"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few repetitions (seconds)")
    parser.add_argument("--sweep", action="store_true", help="also time a grid of tile sizes")
    default_out = Path(__file__).parent / "results" / "gpu_lora_kernel.json"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    if not triton_lora.is_available():
        print("CUDA or triton not available: nothing to time (this benchmark needs a GPU).")
        return
    dim = 1024 if args.quick else 4096
    tokens = 1024 if args.quick else 4096
    reps, inner = (5, 5) if args.quick else (100, 10)
    cases = [
        ("r8_bf16", (tokens, dim, dim, 8, dim), torch.bfloat16, "highest"),
        ("r16_bf16", (tokens, dim, dim, 16, dim), torch.bfloat16, "highest"),
        ("r16_bf16_qkv_slice", (tokens, dim, dim, 16, 3 * dim), torch.bfloat16, "highest"),
        ("r16_fp16", (tokens, dim, dim, 16, dim), torch.float16, "highest"),
        ("r8_fp32", (tokens, dim, dim, 8, dim), torch.float32, "highest"),
        ("r16_fp32", (tokens, dim, dim, 16, dim), torch.float32, "highest"),
        ("r16_fp32_tf32", (tokens, dim, dim, 16, dim), torch.float32, "high"),
    ]
    results = []
    for name, shape, dtype, precision in cases:
        torch.set_float32_matmul_precision(precision)
        try:
            results.append(run_case(name, shape, dtype, reps, inner))
        finally:
            torch.set_float32_matmul_precision("highest")
    props = torch.cuda.get_device_properties(0)
    import triton

    machine = {
        "gpu": props.name,
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "copy_gb_per_s": round(copy_bandwidth(), 1),
    }
    report: dict[str, Any] = {
        "benchmark": "gpu_lora_kernel",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "versions": {"torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda},
        "repeats": reps,
        "calls_per_repeat": inner,
        "quick": args.quick,
        "scale": SCALE,
        "cases": results,
    }
    print(f"{props.name}, torch {torch.__version__}, triton {triton.__version__}, "
          f"copy {machine['copy_gb_per_s']} GB/s, median ms per call")  # fmt: skip
    print(f"{'case':<20} {'ours':>8} {'kernel':>8} {'addmm':>8} {'naive':>8} {'vs addmm':>9} {'vs naive':>9} "
          f"{'GB/s':>6}  same")  # fmt: skip
    for r in results:
        ours, peers = r["ours"], r["peers"]
        print(f"{r['case']:<20} {ours['median_ms']:>8.4f} {peers['triton_kernel']['median_ms']:>8.4f} "
              f"{peers['torch_addmm']['median_ms']:>8.4f} {peers['torch_naive']['median_ms']:>8.4f} "
              f"{r['ratio_vs_torch_addmm']:>8.2f}x {r['ratio_vs_torch_naive']:>8.2f}x "
              f"{ours['gb_per_s']:>6.0f}  {r['same_result']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.sweep:
        report["sweep"] = {}
        for dtype, precision in ((torch.bfloat16, "highest"), (torch.float32, "high")):
            torch.set_float32_matmul_precision(precision)
            try:
                rows = sweep(dtype, tokens, dim)
            finally:
                torch.set_float32_matmul_precision("highest")
            report["sweep"][str(dtype).removeprefix("torch.")] = rows
            print(f"sweep {dtype} {precision} (T={tokens}, in=out={dim}, r=16), fastest first:")
            for row in rows[:6]:
                print(f"  {row}")
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
