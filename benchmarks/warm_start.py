"""Warm start across tasks (issue 16, part 3): a study's hypervolume at small budgets, seeded or not with
the front of a study of the same space on another task, as `study run --warm-start OTHER` seeds it.

For each direction (SST-2 to MRPC and back, on `lora.yaml`'s PEFT blackbox) and each seed:

1. a source study: the default strategy (`mobo-hyperband`) on the source task, budget 30 full trials;
   its full-fidelity Pareto front is the warm start;
2. two target studies on the other task, same seed, budget 15: **cold** proposes the space's defaults
   first (as every study does), **warm** proposes the source front first and then the defaults (each
   configuration once), and under Hyperband trains those seeds straight to full fidelity, as
   `engine.warm_start` and `strategy.make_scheduler` do in a real study.

Both target studies run through the real study loop (`search_efficiency.run_ours`); the hypervolume is the
target task's, from its chance reference point, read off the anytime curve at a few budgets. AutoPEFT
reports that fronts transfer across tasks; this measures whether they do here, and at what price (the
seeds' full-fidelity training comes out of the same budget).

Usage::

    python benchmarks/warm_start.py                  # both directions, 10 seeds (~15 min on 2 cores)
    python benchmarks/warm_start.py --quick          # CI: the synthetic problem onto itself, 1 seed
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import search_efficiency as harness  # noqa: E402
from benchmarks.machine_info import cpu_model  # noqa: E402
from benchmarks.search_analysis import hv_at, quartiles  # noqa: E402

# MRPC's surrogate is `mrpc-long`'s: at `mrpc.yaml`'s short ladder nearly every run stays at the majority class.
DIRECTIONS = (("blackbox-lora-sst2", "blackbox-lora-mrpc-long"), ("blackbox-lora-mrpc-long", "blackbox-lora-sst2"))
STRATEGY = harness.DEFAULT_OURS
SOURCE_BUDGET, TARGET_BUDGET = 30.0, 15.0
CHECKPOINTS = (3.0, 6.0, 10.0, 15.0)  # budgets (full trials) the target's hypervolume is read at
OUT = ROOT / "benchmarks/results/warm_start_blackbox.json"

_problems: dict[str, harness.Problem] = {}


def _problem(name: str) -> harness.Problem:
    """Each process builds a problem once (a surrogate reads the table and fits)."""
    if name not in _problems:
        _problems[name] = harness.PROBLEMS[name]()
    return _problems[name]


def run_pair(source: str, target: str, seed: int, source_budget: float, target_budget: float) -> dict[str, Any]:
    """One seed of one direction: the source study's front, then the cold and the warm target study."""
    found = harness.run_ours(_problem(source), STRATEGY, seed, source_budget, keep_front=True)
    front = found["front"]
    cold = harness.run_ours(_problem(target), STRATEGY, seed, target_budget)
    warm = harness.run_ours(_problem(target), STRATEGY, seed, target_budget, warm=front)
    return {"seed": seed, "source_final_hv": found["final_hv"], "front": front,
            "cold": {"events": cold["events"], "final_hv": cold["final_hv"]},
            "warm": {"events": warm["events"], "final_hv": warm["final_hv"]}}


def _work(args: tuple[str, str, int, float, float]) -> tuple[str, str, dict[str, Any]]:
    source, target = args[0], args[1]
    return source, target, run_pair(*args)


def summarise(runs: list[dict[str, Any]], checkpoints: tuple[float, ...]) -> dict[str, Any]:
    """Per checkpoint: cold and warm hypervolume (median, quartiles) and the seeds where warm is ahead."""
    def spread(values: list[float]) -> dict[str, float]:
        q25, median, q75 = quartiles(values)
        return {"median": median, "q25": q25, "q75": q75}

    rows = []
    for budget in checkpoints:
        cold = [hv_at(r["cold"]["events"], budget) for r in runs]
        warm = [hv_at(r["warm"]["events"], budget) for r in runs]
        rows.append({"budget": budget, "cold": spread(cold), "warm": spread(warm),
                     "warm_ahead": sum(w > c + 1e-12 for w, c in zip(warm, cold, strict=True)),
                     "warm_behind": sum(w < c - 1e-12 for w, c in zip(warm, cold, strict=True))})
    return {"seeds": len(runs), "front_size_median": statistics.median(len(r["front"]) for r in runs),
            "source_final_hv_median": statistics.median(r["source_final_hv"] for r in runs), "at_budget": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the synthetic problem onto itself, 1 seed")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="seeds in parallel processes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    directions = (("synthetic", "synthetic"),) if args.quick else DIRECTIONS
    seeds = args.seeds or (1 if args.quick else 10)
    source_budget, target_budget = (6.0, 6.0) if args.quick else (SOURCE_BUDGET, TARGET_BUDGET)
    checkpoints = tuple(c for c in CHECKPOINTS if c <= target_budget)
    out = args.out.with_name(args.out.stem + "_quick.json") if args.quick else args.out
    threads = int(os.environ.get("AUTOPEFT_BENCH_THREADS", "1"))
    import torch

    torch.set_num_threads(threads)
    at_start = harness.versions()
    started = time.perf_counter()
    work = [(s, t, seed, source_budget, target_budget) for s, t in directions for seed in range(seeds)]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {d: [] for d in directions}
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            results = list(pool.imap_unordered(_work, work))
    else:
        results = [_work(item) for item in work]
    for source, target, result in sorted(results, key=lambda r: (r[0], r[1], r[2]["seed"])):
        runs[(source, target)].append(result)
        print(f"{source} -> {target} seed {result['seed']}: front of {len(result['front'])}; final hv cold "
              f"{result['cold']['final_hv']:.4f} warm {result['warm']['final_hv']:.4f}", flush=True)
    sections = []
    for (source, target), pairs in runs.items():
        section = {"source": source, "target": target, **summarise(pairs, checkpoints), "runs": pairs}
        sections.append(section)
        print(f"\n{source} -> {target}: {section['seeds']} seeds, source front of {section['front_size_median']:g} "
              "(median)")
        print(f"{'budget':>7s} {'cold hv median (IQR)':>26s} {'warm hv median (IQR)':>26s} {'warm ahead/behind':>18s}")
        for row in section["at_budget"]:
            c, w = row["cold"], row["warm"]
            print(f"{row['budget']:7g} {c['median']:10.4f} ({c['q25']:.4f}-{c['q75']:.4f}) "
                  f"{w['median']:10.4f} ({w['q25']:.4f}-{w['q75']:.4f}) "
                  f"{row['warm_ahead']:>9d}/{row['warm_behind']}")
    report = {"benchmark": "warm_start", "quick": args.quick, "date": dt.date.today().isoformat(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
              "threads": threads, "jobs": args.jobs, "versions": at_start, "strategy": STRATEGY,
              "source_budget_full_trials": source_budget, "target_budget_full_trials": target_budget,
              "seconds": time.perf_counter() - started, "directions": sections}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
