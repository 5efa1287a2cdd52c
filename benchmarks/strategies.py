"""Search strategies at equal budget: the Pareto front each finds on a synthetic PEFT search problem.

Problem: the `mixed` space (per layer LoRA, DoRA, serial, parallel, prefix, IA3 or none, with sizes,
and the learning rate) on MiniLM-L6's structure. The trainable-parameter count is the real, exact one
(`ParamCounter` on a meta-device skeleton); the score is a synthetic function of the configuration
and the fidelity (capacity with diminishing returns, top layers worth more, a learning-rate optimum,
a learning curve over the fidelity, and deterministic noise that differs by fidelity), so a study
costs milliseconds per trial and every strategy faces exactly the same problem. Fidelity as in
`trials/minilm-sst2.yaml`: 1024 to 16384 examples, eta 3.

Each strategy runs through the real study loop and store (SQLite, in-process executor) with a budget
of B full-fidelity trial equivalents. Measured: the hypervolume of its full-fidelity front (score
above 0.5 against trainable parameters, reference = the space's largest count), as a share of the
front of N random configurations evaluated at full fidelity; trials run; seconds spent proposing.
The peer is Optuna's multi-objective TPE at full fidelity (`tpe`), what a user wiring Optuna by hand
gets, since Optuna cannot prune a multi-objective study; `random` is the floor.

Full run:  python benchmarks/strategies.py                 (budget 30, 5 seeds, every strategy)
CI smoke:  python benchmarks/strategies.py --quick         (budget 3, 1 seed, random/hyperband/tpe)
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.engine.definition import StudyDefinition, make_objectives  # noqa: E402
from autopeft.engine.executors import InProcessExecutor  # noqa: E402
from autopeft.engine.loop import Budget, StudyLoop  # noqa: E402
from autopeft.engine.strategy import STRATEGIES, make_sampler_for, make_scheduler  # noqa: E402
from autopeft.engine.task import TrialOutcome, TrialTask  # noqa: E402
from autopeft.search.pareto import hypervolume, pareto_front_mask  # noqa: E402
from autopeft.status import TrialStatus  # noqa: E402

MIN_F, MAX_F, ETA = 1024, 16384, 3.0
METHOD_WEIGHT = {"none": 0.0, "lora": 1.0, "dora": 1.05, "serial_adapter": 0.9, "parallel_adapter": 1.0,
                 "prefix": 0.6, "ia3": 0.5}
SIZE_KEY = {"lora": "rank", "dora": "rank", "serial_adapter": "size", "parallel_adapter": "size", "prefix": "length"}
SIZE_MAX = {"rank": 32, "size": 128, "length": 32}


def final_score(config: dict[str, Any], num_layers: int) -> float:
    """Chance is 0.5; capacity saturates; the top layers count more; a learning rate near 2e-3 is best."""
    capacity = 0.0
    for i in range(num_layers):
        method = config.get(f"layer_{i}.method", "none")
        key = SIZE_KEY.get(method)
        size = math.log2(1 + config[f"layer_{i}.{key}"]) / math.log2(1 + SIZE_MAX[key]) if key else 0.6
        capacity += METHOD_WEIGHT[method] * size * (0.6 + 0.08 * i)
    quality = 1.0 - math.exp(-capacity / 2.0)
    lr_factor = math.exp(-((math.log10(config["learning_rate"]) - math.log10(2e-3)) ** 2) / 0.5)
    return 0.5 + 0.42 * quality * lr_factor


def noise(config: dict[str, Any], fidelity: int) -> float:
    digest = hashlib.sha256(repr((sorted(config.items()), fidelity)).encode()).digest()
    return random.Random(digest).gauss(0.0, 0.006)


def score_at(config: dict[str, Any], fidelity: int, num_layers: int) -> float:
    final = final_score(config, num_layers)
    curve = (1 - math.exp(-3.5 * fidelity / MAX_F)) / (1 - math.exp(-3.5))
    return 0.5 + (final - 0.5) * curve + noise(config, fidelity)


class Problem:
    """The space, the exact counter and the synthetic score; shared by every run of the benchmark."""

    def __init__(self) -> None:
        from autopeft.space.space import load_space
        from autopeft.train.counting import ParamCounter
        from autopeft.train.recipe import load_recipe

        self.space = load_space(ROOT / "search_spaces/mixed.yaml")
        self.counter = ParamCounter.for_recipe(load_recipe(ROOT / "trials/demo.yaml"), self.space)
        self.counter.warm()
        self.num_layers = self.counter.num_layers
        self.dims = self.space.dimensions(self.num_layers)
        self.max_params = float(self.counter.bounds()[1])
        self.objectives = make_objectives(("score", "trainable_params"), base_params=self.counter.base_params)

    def run(self, task: TrialTask) -> TrialOutcome:
        config = dict(task.config)
        objectives = {"score": score_at(config, task.fidelity, self.num_layers),
                      "trainable_params": float(self.counter.count(config))}
        return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity, objectives, {})

    def hv(self, points: list[tuple[float, float]]) -> float:
        """Hypervolume of (score, params) points above chance and below the space's largest count."""
        if not points:
            return 0.0
        import numpy as np

        minimised = np.array([[-s, p] for s, p in points])
        mask = pareto_front_mask(minimised)
        return float(hypervolume(minimised[mask], np.array([-0.5, self.max_params])))

    def random_front_hv(self, n: int, seed: int) -> float:
        rng = random.Random(seed)
        configs = [self.space.sample(self.num_layers, rng) for _ in range(n)]
        return self.hv([(score_at(c, MAX_F, self.num_layers), float(self.counter.count(c))) for c in configs])


def run_strategy(problem: Problem, strategy: str, seed: int, budget: float) -> dict[str, Any]:
    from autopeft.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        definition = StudyDefinition(space={}, recipe={"fidelity": {"min": MIN_F, "max": MAX_F}},
                                     objectives=problem.objectives, recipe_dir=".")
        store.create_study("b", objectives=definition.objectives_json(), recipe=definition.recipe_json(),
                           strategy=strategy, seed=seed)
        sampler = make_sampler_for(strategy, problem.dims, problem.objectives, seed=seed,
                                   feasible=problem.counter.feasible,
                                   known={"trainable_params": problem.counter.count})
        propose_seconds = [0.0]
        inner = sampler.propose

        def timed(n: int, history: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(n, history)
            finally:
                propose_seconds[0] += time.perf_counter() - started

        sampler.propose = timed  # type: ignore[method-assign]

        def factory(propose: Any) -> Any:
            return make_scheduler(strategy, propose, problem.objectives, min_fidelity=MIN_F, max_fidelity=MAX_F,
                                  seed=seed)

        loop = StudyLoop(store=store, name="b", definition=definition, scheduler_factory=factory, sampler=sampler,
                         executor=InProcessExecutor(), runner=problem.run, compile_config=lambda c: None,
                         budget=Budget(trials=budget))
        started = time.perf_counter()
        summary = loop.run()
        wall = time.perf_counter() - started
        points = [(e.objectives["score"], e.objectives["trainable_params"]) for e in summary.front.completed]
        store.close()
    return {"hv": problem.hv(points), "trials": sum(summary.counts.values()), "full_trials": len(points),
            "budget_used": summary.budget_used, "propose_seconds": propose_seconds[0], "wall_seconds": wall,
            "best_score": max((p[0] for p in points), default=None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    parser.add_argument("--random-front", type=int, default=20000, help="random configurations for the reference")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/strategies.json")
    args = parser.parse_args(argv)
    budget = args.budget or (3.0 if args.quick else 30.0)
    seeds = args.seeds or (1 if args.quick else 5)
    names = (args.strategies or ("random,hyperband,tpe" if args.quick else ",".join(STRATEGIES))).split(",")
    threads = int(os.environ.get("AUTOPEFT_BENCH_THREADS", "1"))
    import torch

    torch.set_num_threads(threads)
    problem = Problem()
    reference = problem.random_front_hv(1000 if args.quick else args.random_front, seed=12345)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for seed in range(seeds):  # interleaved: every strategy once per seed
        for name in names:
            result = run_strategy(problem, name, seed, budget)
            result["hv_share"] = result["hv"] / reference
            runs[name].append(result)
            print(f"seed {seed} {name:15s} hv share {result['hv_share']:.3f}  trials {result['trials']:3d}  "
                  f"full {result['full_trials']:3d}  propose {result['propose_seconds']:.1f}s", flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    table = []
    for name in names:
        shares = [r["hv_share"] for r in runs[name]]
        row = {"strategy": name, "hv_share_median": statistics.median(shares), "hv_share_min": min(shares),
               "hv_share_max": max(shares), "trials_median": median(name, "trials"),
               "full_trials_median": median(name, "full_trials"),
               "propose_seconds_median": median(name, "propose_seconds")}
        for peer in ("tpe", "random"):
            if peer in runs:
                row[f"ratio_vs_{peer}"] = row["hv_share_median"] / statistics.median(r["hv_share"] for r in runs[peer])
        table.append(row)
    print(f"\nbudget {budget:g} full trials, {seeds} seed(s); hypervolume as a share of the front of "
          f"{args.random_front if not args.quick else 1000} random configurations at full fidelity")
    print(f"{'strategy':15s} {'hv share (min-max)':>22s} {'vs tpe':>7s} {'vs random':>9s} {'trials':>7s} "
          f"{'full':>5s} {'propose s':>9s}")
    for row in table:
        print(f"{row['strategy']:15s} {row['hv_share_median']:8.3f} ({row['hv_share_min']:.3f}-"
              f"{row['hv_share_max']:.3f}) {row.get('ratio_vs_tpe', float('nan')):7.3f} "
              f"{row.get('ratio_vs_random', float('nan')):9.3f} {row['trials_median']:7.0f} "
              f"{row['full_trials_median']:5.0f} {row['propose_seconds_median']:9.1f}")
    report = {"benchmark": "strategies", "quick": args.quick, "date": dt.date.today().isoformat(),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "threads": threads, "budget_full_trials": budget, "seeds": seeds,
              "fidelity": {"min": MIN_F, "max": MAX_F, "eta": ETA}, "space": "mixed", "model": "minilm-l6",
              "reference_random_configs": 1000 if args.quick else args.random_front, "reference_hv": reference,
              "strategies": table, "runs": runs}
    out = args.out.with_name(args.out.stem + "_quick.json") if args.quick else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
