"""Trial training throughput on one CUDA GPU: autopeft's trial path against Hugging Face `peft`, bf16 Llama.

Setting (see ../shared/BENCHMARKS.md, "On a GPU"): a random-initialised `LlamaForSequenceClassification`
built from a config (hidden 2048, 16 layers, 16 heads, 8 key/value heads, intermediate 5632, vocab
32000, bf16, SDPA attention, 2 labels, pad id 0; nothing is downloaded). Data: 2,048 synthetic
sequences (seeded), lengths log-uniform in 32..512, token ids 1..vocab-1, label = whether the first
token is in the lower half of the vocabulary. Batch 16, 5 warm-up steps then 60 timed steps, AdamW
(lr 1e-4, no weight decay, constant), gradient clipping 1.0, `float(loss)` read every step, the same on
every side.

Cases: (a) LoRA r=8 alpha 16 on q,v of all layers; (b) LoRA r=8 alpha 16 on q,k,v,o,gate,up,down of the
top 3 layers; (c) a parallel adapter of size 64 in all layers.

Sides (each run builds its model afresh from the same seed; sides interleaved within every round):
- `ours`: `autopeft.peft.apply_plan` (fused in-place LoRA; on CUDA its forward is the Triton kernel),
  frozen layers below the lowest adapted one under `torch.no_grad` (`autopeft.train.frozen.FrozenPrefix`,
  cache off: a single pass sees no example twice), batches from `length_grouped_batches` with the HF
  Trainer's megabatch size (min(n / (4 x batch), 50) batches), the same batches `peft_grouped` gets;
- `ours_torch`: the same with the Triton kernel switched off (`triton_lora.is_available` -> False):
  the torch path (`x @ A.T`, `addmm_`);
- `ours_epoch_grouped`: `ours` with the trial's default grouping (the whole epoch sorted together);
- `peft_grouped`: `peft` LoraConfig(r=8, alpha 16, dropout 0, SEQ_CLS) + the same loop and batches as
  `ours` -- the peer we are judged against; `peft_padded`: the same with random batches;
- for (c), which `peft` lacks: `ours_unfused` (`set_fused(False)`; note the parallel adapter has one
  path only, so it runs the same code as `ours`).

Round 0 is an untimed warm-up of every side that also counts the timed steps' FLOPs (torch's
FlopCounterMode, forward and backward, attention included; the Triton LoRA kernel is not counted);
`--flops-from` takes the counts of an earlier run instead (same batches and model: same counts) and
round 0 is then 10 steps. Rounds 1..R are timed. The base model is built once (seeded) and deep-copied
for every run. Peak memory is `torch.cuda.max_memory_allocated` from just after the adapted model sits
on the GPU (its weights included, the pristine copy excluded) to the end of the run.

cuDNN SDPA is switched off on every side by default (`--cudnn-sdpa on` keeps torch's default): with
torch 2.11 on an H100, transformers' masked SDPA call goes to cuDNN, which builds a new execution plan
for every new (batch, padded length), about 0.5 s a step here, so a length-grouped loop measured the
plan builds, not the training (first run on 2026-11-22: about 20 TFLOP/s on every side).

    python benchmarks/gpu_throughput.py --out $OUT/gpu_throughput.json        # on the GPU
    python benchmarks/gpu_throughput.py --tiny --device cpu --repeats 1        # smoke test on CPU
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.peft import PeftPlan, apply_plan  # noqa: E402
from autopeft.peft.inject import model_layers  # noqa: E402
from autopeft.peft.kernels import triton_lora  # noqa: E402
from autopeft.peft.lora import fused as lora_fused  # noqa: E402
from autopeft.peft.lora.layer import set_fused  # noqa: E402
from autopeft.peft.roles import architecture_for  # noqa: E402
from autopeft.train.batching import length_grouped_batches, random_batches  # noqa: E402
from autopeft.train.frozen import FrozenPrefix  # noqa: E402

FULL = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=8,
            intermediate_size=5632, vocab_size=32000, max_position_embeddings=1024)
TINY = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=176, vocab_size=1000, max_position_embeddings=128)
CASES = {
    "a": "LoRA r=8 alpha 16 on q,v of all layers",
    "b": "LoRA r=8 alpha 16 on q,k,v,o,gate,up,down of the top 3 layers",
    "c": "parallel adapter size 64 in all layers",
}
ALL_LINEAR = ["query", "key", "value", "attn_output", "ff_gate", "ff_up", "ff_down"]
PEFT_ALL_LINEAR = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
N_EXAMPLES, BATCH, LR, CLIP, SEED = 2048, 16, 1e-4, 1.0, 0
#: Sides that are dropped first when the time budget runs short.
OPTIONAL = ("peft_padded", "ours_epoch_grouped")


def sides_for(case: str) -> list[str]:
    if case == "c":
        return ["ours", "ours_unfused"]
    return ["ours", "ours_torch", "peft_grouped", "ours_epoch_grouped", "peft_padded"]


# ------------------------------------------------------------------------------------------------ data
class Data:
    """Synthetic token sequences, their labels and the batch orders of every side."""

    def __init__(self, n: int, vocab: int, min_len: int, max_len: int, steps: int) -> None:
        rng = np.random.default_rng(SEED)
        lengths = np.exp(rng.uniform(math.log(min_len), math.log(max_len + 1), n)).astype(np.int64)
        self.lengths = np.clip(lengths, min_len, max_len)
        self.seqs = [torch.from_numpy(rng.integers(1, vocab, int(n_tok))) for n_tok in self.lengths]
        self.labels = torch.tensor([int(s[0]) < vocab // 2 for s in self.seqs], dtype=torch.long)
        self.steps = steps
        hf_mult = max(1, min(n // (BATCH * 4), 50))  # transformers' LengthGroupedSampler
        self.orders = {
            "hf_grouped": length_grouped_batches(self.lengths, BATCH, np.random.default_rng([SEED, 0]), hf_mult),
            "epoch_grouped": length_grouped_batches(self.lengths, BATCH, np.random.default_rng([SEED, 0]),
                                                    math.ceil(n / BATCH)),
            "random": random_batches(n, BATCH, np.random.default_rng([SEED, 0])),
        }
        for name, order in self.orders.items():
            if len(order) < steps:
                raise SystemExit(f"{name}: {len(order)} batches per epoch < {steps} steps; lower --steps")

    def batch(self, order: str, step: int) -> tuple[list[int], dict[str, torch.Tensor]]:
        indices = self.orders[order][step]
        width = int(max(self.lengths[i] for i in indices))
        ids = torch.zeros((len(indices), width), dtype=torch.long)  # pad id 0, right padding
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            ids[row, : len(self.seqs[i])] = self.seqs[i]
            mask[row, : len(self.seqs[i])] = 1
        return indices, {"input_ids": ids, "attention_mask": mask, "labels": self.labels[indices]}

    def tokens(self, order: str, first: int, last: int) -> tuple[int, int]:
        real = padded = 0
        for step in range(first, last):
            rows = [int(self.lengths[i]) for i in self.orders[order][step]]
            real += sum(rows)
            padded += max(rows) * len(rows)
        return real, padded


# ----------------------------------------------------------------------------------------------- model
_PRISTINE: dict[str, Any] = {}


def build_model(shape: dict[str, int], device: torch.device) -> torch.nn.Module:
    """A fresh copy of the seeded base model (built once per process, then deep-copied)."""
    import copy

    if "model" not in _PRISTINE:
        _PRISTINE["model"] = _build_model(shape, device)
    return copy.deepcopy(_PRISTINE["model"])


def pristine_bytes(device: torch.device) -> int:
    model = _PRISTINE.get("model")
    if model is None or device.type != "cuda":
        return 0
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def _build_model(shape: dict[str, int], device: torch.device) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(**shape, num_labels=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         attn_implementation="sdpa", tie_word_embeddings=False)
    torch.manual_seed(SEED)
    with torch.device(device):
        model = LlamaForSequenceClassification(config)
    return model.to(torch.bfloat16)


def our_plan(case: str, num_layers: int) -> dict[str, Any]:
    if case == "a":
        return {"all": [{"method": "lora", "r": 8, "alpha": 16, "roles": ["query", "value"]}]}
    if case == "b":
        return {f"{num_layers - 3}-{num_layers - 1}": [{"method": "lora", "r": 8, "alpha": 16, "roles": ALL_LINEAR}]}
    return {"all": [{"method": "parallel_adapter", "size": 64}]}


_ORIGINAL_IS_AVAILABLE = triton_lora.is_available
_ORIGINAL_LAUNCH = triton_lora._launch
LAUNCHES = [0]


def _counting_launch(*args: Any, **kwargs: Any) -> Any:
    LAUNCHES[0] += 1
    return _ORIGINAL_LAUNCH(*args, **kwargs)


triton_lora._launch = _counting_launch  # counts real Triton kernel launches (module global, looked up per call)


def set_triton(enabled: bool) -> bool:
    """Switch the fused LoRA path's Triton kernel on or off; returns whether it is active now."""
    triton_lora.is_available = _ORIGINAL_IS_AVAILABLE if enabled else (lambda: False)
    lora_fused._triton_module.cache_clear()
    return lora_fused._triton_module() is not None


def prepare_ours(case: str, side: str, shape: dict[str, int], device: torch.device) -> tuple[Any, Any, dict]:
    triton_on = set_triton(side != "ours_torch")
    model = build_model(shape, device)
    arch = architecture_for(model)
    layers = model_layers(model, arch)
    plan = PeftPlan.from_selectors(our_plan(case, len(layers)), len(layers))
    torch.manual_seed(SEED)
    info = apply_plan(model, plan, arch=arch)
    set_fused(model, side != "ours_unfused")
    frozen = None
    lowest = plan.lowest_adapted_layer
    if lowest is not None and lowest > 0:
        frozen = FrozenPrefix(model.base_model, layers, lowest, cache_max_bytes=0)
    meta = {"trainable_params": info.trainable_params, "triton_active": triton_on,
            "frozen_layers": lowest or 0}
    return model, frozen, meta


def prepare_peft(case: str, shape: dict[str, int], device: torch.device) -> tuple[Any, Any, dict]:
    from peft import LoraConfig, get_peft_model

    set_triton(False)  # irrelevant to peft; keeps the launch counter honest
    model = build_model(shape, device)
    n = model.config.num_hidden_layers
    if case == "a":
        targets: Any = ["q_proj", "v_proj"]
    else:
        top = "|".join(str(i) for i in range(n - 3, n))
        targets = rf".*\.layers\.({top})\..*({PEFT_ALL_LINEAR})$"
    torch.manual_seed(SEED)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                                             task_type="SEQ_CLS"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, None, {"trainable_params": trainable, "triton_active": False, "frozen_layers": 0}


# ----------------------------------------------------------------------------------------------- runs
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def no_sdpa_gqa() -> Iterator[None]:
    """Under FlopCounterMode: repeat k/v heads instead of SDPA's `enable_gqa` (same work), because
    torch 2.11's SDPA FLOP formula rejects grouped-query shapes (transformers uses them on unmasked batches)."""
    from transformers.integrations import sdpa_attention

    original = sdpa_attention.use_gqa_in_sdpa
    sdpa_attention.use_gqa_in_sdpa = lambda *a, **k: False
    try:
        yield
    finally:
        sdpa_attention.use_gqa_in_sdpa = original


def run_side(case: str, side: str, data: Data, shape: dict[str, int], device: torch.device,
             warmup: int, steps: int, count_flops: bool) -> dict[str, Any]:
    free(device)
    if side.startswith("peft"):
        model, frozen, meta = prepare_peft(case, shape, device)
    else:
        model, frozen, meta = prepare_ours(case, side, shape, device)
    order = {"peft_padded": "random", "ours_epoch_grouped": "epoch_grouped"}.get(side, "hf_grouped")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    sync(device)
    weights_mb = 0.0
    pristine_mb = pristine_bytes(device) / 2**20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        weights_mb = torch.cuda.memory_allocated(device) / 2**20 - pristine_mb
    LAUNCHES[0] = 0
    losses: list[float] = []
    flops: int | None = None
    model.train()
    started = 0.0
    counter_ctx: Any = contextlib.nullcontext()
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            if count_flops:
                from torch.utils.flop_counter import FlopCounterMode

                gqa_ctx = no_sdpa_gqa()
                gqa_ctx.__enter__()
                counter_ctx = FlopCounterMode(display=False)
                counter_ctx.__enter__()
            started = time.perf_counter()
        indices, batch = data.batch(order, step)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if frozen is not None:
            frozen.before_batch([("train", i) for i in indices], [int(data.lengths[i]) for i in indices])
        loss = model(**batch).loss
        value = float(loss.detach())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(value)
    sync(device)
    seconds = time.perf_counter() - started
    if count_flops:
        counter_ctx.__exit__(None, None, None)
        gqa_ctx.__exit__(None, None, None)
        flops = int(counter_ctx.get_total_flops())
    real, padded = data.tokens(order, warmup, warmup + steps)
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 - pristine_mb if device.type == "cuda" else 0.0
    result = {
        "case": case, "side": side, "batches": order, "steps": steps, "seconds": seconds,
        "examples_per_s": steps * BATCH / seconds, "tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds, "padding_share": 1 - real / padded,
        "peak_mem_mb": peak_mb, "weights_mb": weights_mb,
        "final_loss": statistics.fmean(losses[-10:]), "first_loss": losses[0],
        "triton_launches": LAUNCHES[0], "flops": flops, **meta,
    }
    del model, frozen, optimizer, params, loss, batch
    free(device)
    return result


def matmul_gflops(device: torch.device, tokens: int, hidden: int, inter: int) -> dict[str, float]:
    """bf16 (fp32 on CPU) matmul rate on the model's own feed-forward shapes."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out = {}
    for name, (m, k, n) in {"ff_up": (tokens, hidden, inter), "ff_down": (tokens, inter, hidden)}.items():
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        reps = 50 if device.type == "cuda" else 3
        for _ in range(5):
            a @ b
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        out[name] = 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
    return out


# ---------------------------------------------------------------------------------------------- report
def summarise(runs: list[dict[str, Any]], peak_gflops: float,
              known_flops: dict[tuple[str, str], int] | None = None) -> list[dict[str, Any]]:
    cases = []
    flops_of = dict(known_flops or {})
    flops_of.update({(r["case"], r["side"]): r["flops"] for r in runs if r.get("round") == 0 and r.get("flops")})
    for case in CASES:
        timed = [r for r in runs if r["case"] == case and r.get("round", 0) > 0 and "error" not in r]
        if not timed:
            continue
        sides: dict[str, Any] = {}
        for side in sides_for(case):
            rs = [r for r in timed if r["side"] == side]
            if not rs:
                continue
            entry: dict[str, Any] = {"runs": len(rs)}
            for key in ("examples_per_s", "tokens_per_s", "padded_tokens_per_s", "peak_mem_mb", "final_loss"):
                vals = [r[key] for r in rs]
                entry[key] = statistics.median(vals)
                entry[key + "_min_max"] = [min(vals), max(vals)]
            entry["weights_mb"] = rs[0]["weights_mb"]
            entry["padding_share"] = rs[0]["padding_share"]
            entry["trainable_params"] = rs[0]["trainable_params"]
            entry["triton_active"] = rs[0]["triton_active"]
            entry["triton_launches_per_run"] = rs[0]["triton_launches"]
            flops = flops_of.get((case, side))
            if flops:
                gflops = flops / statistics.median(r["seconds"] for r in rs) / 1e9
                entry["model_gflops"] = gflops
                entry["roofline_share"] = gflops / peak_gflops if peak_gflops else None
            sides[side] = entry
        item: dict[str, Any] = {"case": case, "description": CASES[case], "sides": sides}
        ours = sides.get("ours")

        def ratio(a: str, b: str, key: str = "examples_per_s", sides: dict[str, Any] = sides) -> float | None:
            if a in sides and b in sides and sides[b][key]:
                return sides[a][key] / sides[b][key]
            return None

        if ours:
            item["ratio_vs_peft_grouped"] = ratio("ours", "peft_grouped")
            item["ratio_vs_peft_padded"] = ratio("ours", "peft_padded")
            item["memory_ratio_vs_peft_grouped"] = ratio("ours", "peft_grouped", "peak_mem_mb")
            item["ratio_triton_vs_torch"] = ratio("ours", "ours_torch")
            item["ratio_epoch_grouped_vs_peft_grouped"] = ratio("ours_epoch_grouped", "peft_grouped")
            item["ratio_vs_ours_unfused"] = ratio("ours", "ours_unfused")
        cases.append(item)
    return cases


def print_table(cases: list[dict[str, Any]]) -> None:
    print(f"\n{'case':4} {'side':20} {'ex/s':>8} {'(min-max)':>17} {'tok/s':>9} {'peak MiB':>9} "
          f"{'loss':>7} {'TFLOP/s':>8} {'share':>6} {'triton':>6}")
    for item in cases:
        for side, e in item["sides"].items():
            lo, hi = e["examples_per_s_min_max"]
            tf = e.get("model_gflops")
            share = e.get("roofline_share")
            print(f"{item['case']:4} {side:20} {e['examples_per_s']:8.1f} {f'{lo:.1f}-{hi:.1f}':>17} "
                  f"{e['tokens_per_s']:9.0f} {e['peak_mem_mb']:9.0f} {e['final_loss']:7.4f} "
                  f"{(tf or 0) / 1e3:8.1f} {(share or 0):6.2f} {e['triton_launches_per_run']:6d}")
        keys = ("ratio_vs_peft_grouped", "ratio_vs_peft_padded", "memory_ratio_vs_peft_grouped",
                "ratio_triton_vs_torch", "ratio_epoch_grouped_vs_peft_grouped", "ratio_vs_ours_unfused")
        print("     " + "  ".join(f"{k}={item[k]:.3f}" for k in keys if item.get(k) is not None))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "peft", "triton", "pydantic"):
        try:
            out[name] = __import__(name).__version__
        except Exception as err:
            out[name] = f"unavailable ({type(err).__name__})"
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="a tiny Llama and short sequences (smoke test)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="abc")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="after this many seconds optional sides are skipped; after 1.25x it stops")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_throughput.json"))
    ap.add_argument("--cudnn-sdpa", choices=("off", "on"), default="off",
                    help="off (default): torch.backends.cuda.enable_cudnn_sdp(False) on every side")
    ap.add_argument("--sides", default=None, help="comma list: run only these sides (default: all)")
    ap.add_argument("--flops-from", default=None,
                    help="an earlier result JSON (same settings) whose round-0 FLOP counts to reuse")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if args.cudnn_sdpa == "off":
        torch.backends.cuda.enable_cudnn_sdp(False)
    known_flops: dict[tuple[str, str], int] = {}
    if args.flops_from and Path(args.flops_from).exists():
        earlier = json.loads(Path(args.flops_from).read_text())
        if earlier.get("setting", {}).get("timed_steps") == args.steps:
            known_flops = {(r["case"], r["side"]): r["flops"] for r in earlier["runs"]
                           if r.get("round") == 0 and r.get("flops") and r.get("steps", args.steps) == args.steps}
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; use --device cpu (with --tiny) for a smoke test")
    shape = TINY if args.tiny else FULL
    min_len, max_len = (8, 64) if args.tiny else (32, 512)
    data = Data(N_EXAMPLES, shape["vocab_size"], min_len, max_len, args.warmup + args.steps)
    mean_tokens = int(np.mean([data.tokens("hf_grouped", s, s + 1)[1] for s in range(args.warmup + args.steps)]))
    mm = matmul_gflops(device, mean_tokens, shape["hidden_size"], shape["intermediate_size"])
    peak_gflops = max(mm.values())
    machine: dict[str, Any] = {"device": str(device), "platform": platform.platform(),
                               "cpu_count": __import__("os").cpu_count()}
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        machine.update(gpu=prop.name, multiprocessors=prop.multi_processor_count,
                       memory_gib=round(prop.total_memory / 2**30, 1))
    result: dict[str, Any] = {
        "benchmark": "gpu_throughput",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "versions": versions(),
        "setting": {"model": "LlamaForSequenceClassification (random init)", **shape, "dtype": "bfloat16",
                    "attention": "sdpa", "examples": N_EXAMPLES, "lengths": f"log-uniform {min_len}..{max_len}",
                    "batch": BATCH, "warmup_steps": args.warmup, "timed_steps": args.steps, "lr": LR,
                    "clip": CLIP, "tiny": args.tiny, "mean_padded_tokens_per_batch_hf_grouped": mean_tokens,
                    "cudnn_sdpa": args.cudnn_sdpa, "flops_from": args.flops_from if known_flops else None},
        "repeats": args.repeats, "matmul_gflops": mm, "runs": [], "skipped": [], "cases": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        result["cases"] = summarise(result["runs"], peak_gflops, known_flops)
        result["wall_s"] = time.perf_counter() - t_start
        out.write_text(json.dumps(result, indent=2) + "\n")

    cases = [c for c in args.cases if c in CASES]
    print(f"versions {result['versions']}  machine {machine}  matmul GFLOP/s {mm}", flush=True)
    for rnd in range(args.repeats + 1):
        for case in cases:
            sides = [x for x in sides_for(case) if not args.sides or x in args.sides.split(",")]
            if rnd % 2 == 0:  # alternate the order so no side always runs first
                sides = sides[::-1]
            for side in sides:
                elapsed = time.perf_counter() - t_start
                if elapsed > 1.25 * args.budget_s or (elapsed > args.budget_s and side in OPTIONAL):
                    result["skipped"].append({"case": case, "side": side, "round": rnd})
                    continue
                count = rnd == 0 and (case, side) not in known_flops
                steps = args.steps if rnd > 0 or count else min(args.steps, 10)
                try:
                    r = run_side(case, side, data, shape, device, args.warmup, steps, count_flops=count)
                except Exception as err:
                    r = {"case": case, "side": side, "error": f"{type(err).__name__}: {err}"}
                    free(device)
                r["round"] = rnd
                result["runs"].append(r)
                print(f"[{time.perf_counter() - t_start:6.1f}s] round {rnd} {case} {side:20} "
                      + (r["error"] if "error" in r else
                         f"{r['examples_per_s']:8.1f} ex/s {r['peak_mem_mb']:8.0f} MiB loss {r['final_loss']:.4f} "
                         f"triton={r['triton_active']} launches={r['triton_launches']}"), flush=True)
                save()
    save()
    print_table(result["cases"])
    print(f"\nwrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
