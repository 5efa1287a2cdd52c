"""Search efficiency: the compute each strategy needs to reach a hypervolume, against the strongest peers.

Every method faces the same `Problem` (a search space, the exact trainable-parameter count, a score over
configuration and fidelity, a fidelity ladder) with the same compute budget per run, counted in
full-fidelity trial equivalents as the study budget counts them (a job from fidelity a to b costs
(b - a) / max) and, apart, in wall time: the seconds the method itself spent (proposals, scheduling,
bookkeeping; measured) plus the training time the compute stands for (`Problem.full_trial_seconds` per
full trial; nominal, as the problem's training is simulated).

Methods:
- ours: every autopeft strategy (`random`, `hyperband`, `tpe`, `nsga2`, `mobo`, `mobo-hyperband`) through
  the real study loop and store (SQLite, in-process executor), as `benchmarks/strategies.py` runs them;
- peers, each at its strongest ordinary setting (what a competent user switches on without new code):
  - `optuna-gp`: Optuna's `GPSampler` (multi-objective: log-EHVI), defaults (10 random start-up trials,
    noisy objective), over the conditional (define-by-run) space: it models the parameters every trial
    has (the intersection search space) and samples the conditional sizes at random. The flat space
    (every parameter suggested in every trial, the inactive ones ignored: `optuna-gp-flat`) lets the GP
    model the sizes too, but measured weaker on the synthetic problem (median final hypervolume 0.578
    against 0.594 over 10 seeds, with 8x the proposal time), so the conditional space is the peer;
  - `optuna-tpe`: Optuna's TPE with `multivariate=True, group=True` (the documented setting for
    conditional, define-by-run spaces) and the default 10 start-up trials;
  - `optuna-nsga2`: Optuna's NSGA-II over the conditional space with a population of budget/3 (at least
    4): the default 50 would leave a 30-trial study entirely in its random first generation (the flat
    space, `optuna-nsga2-flat`, measured weaker: 0.536 against 0.567 over 10 seeds);
  - the Optuna peers run every trial at full fidelity: Optuna cannot prune multi-objective studies;
  - `syne-moasha`: Syne Tune's `MOASHA` (multi-objective asynchronous successive halving, non-dominated
    sorting), driven as its `Tuner` drives it with one worker: each trial reports after every step of
    the problem's report ladder and stops when MOASHA says so; grace period = the ladder's lowest
    fidelity, reduction factor = the problem's eta, one bracket (its default); flat space;
  - `random-search`: uniform random configurations of the space at full fidelity.

Hypervolume: of the full-fidelity front found so far, (score, trainable parameters), from one fixed
reference point per problem (the score floor, the space's largest parameter count), the same for every
method. Anytime curves: that hypervolume against compute spent. The target of a problem is the best
peer's final hypervolume (median over seeds at the full budget); for each method: the compute it needs
to reach it (per seed the first compute at which its front's hypervolume reaches the target; median
over seeds, null if the median seed never does), and `compute_ratio_vs_best_peer` = our best strategy's
compute to reach the target / the best peer's compute (the budget it spent to get there). Below 1 is
better; the issue's target is 1/3.

Problems: `synthetic` (the synthetic problem of `benchmarks/strategies.py`: the `mixed` space on
MiniLM-L6 with exact counts, a formula for the score, noise fixed per configuration and fidelity; the fast
CI case), and `blackbox-<space>-<task>` for `lora`/`mixed` x `sst2`/`mrpc`/`mrpc-long`: scores from the
surrogate of real training (`benchmarks/peft_blackbox/surrogate.py`: gradient boosting fitted on the
blackbox table when the problem is built, plus the measured run-to-run noise drawn from (config, fidelity,
seed)), exact counts from `ParamCounter` with the collector's recipe, fidelity 512-4,096 examples
(1,024-16,384 for `mrpc-long`; eta 2), chance (the dev split's majority class) as the score floor. It
needs the GLUE files and at least 20 complete configurations of its list in the table (building it says
how many there are).

Full run:  python benchmarks/search_efficiency.py               (budget 30, 10 seeds, every method)
           [--jobs 2: seeds in parallel processes; timings then share the CPU]
CI smoke:  python benchmarks/search_efficiency.py --quick       (budget 6, 1 seed, a few methods; seconds)
Outputs:   benchmarks/results/search_efficiency.json (and _quick), search_efficiency_<problem>.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import cpu_model  # noqa: E402
from benchmarks.search_analysis import plot, previous_runs, print_table, summarise  # noqa: E402
from benchmarks.search_methods import (  # noqa: E402
    DEFAULT_OURS,
    OUR_VARIANTS,
    OURS,
    PEERS,
    QUICK_METHODS,
    VARIANTS,
)
from benchmarks.search_peers import run_moasha, run_optuna, run_random_search, unavailable  # noqa: E402
from benchmarks.search_problem import PROBLEMS, Problem, Tracker  # noqa: E402

__all__ = ["DEFAULT_OURS", "PROBLEMS", "Problem", "Tracker", "run_method", "run_ours"]


# -- ours ---------------------------------------------------------------------------------------------

def run_ours(problem: Problem, method: str, seed: int, budget: float, *,
             warm: Sequence[Mapping[str, Any]] = (), keep_front: bool = False) -> dict[str, Any]:
    """One run of our ``method`` through the study loop.

    ``warm``: configurations proposed first, before the space's defaults, as `study run --warm-start` seeds
    a study with another study's front (`benchmarks/warm_start.py`); ``keep_front``: the result carries the
    run's front configurations (``front``) for such a seed.
    """
    from autopeft.engine.definition import StudyDefinition
    from autopeft.engine.executors import InProcessExecutor
    from autopeft.engine.loop import Budget, StudyLoop
    from autopeft.engine.strategy import StrategyOptions, make_sampler_for, make_scheduler
    from autopeft.engine.task import TrialOutcome, TrialTask
    from autopeft.space.encoding import config_key
    from autopeft.status import TrialStatus
    from autopeft.store import Store

    strategy, option_values = OUR_VARIANTS.get(method, (method, {}))
    options = StrategyOptions(**option_values)
    counter = getattr(problem, "counter", None)
    tracker = Tracker(problem, budget)
    reached: dict[int, int] = {}

    def runner(task: TrialTask) -> TrialOutcome:
        start = reached.get(task.number, 0)  # a promotion continues from the trial's last fidelity
        reached[task.number] = task.fidelity
        score, params = tracker.evaluate(task.config, start, task.fidelity, seed)
        return TrialOutcome(task.number, TrialStatus.COMPLETE, task.fidelity,
                            {"score": score, "trainable_params": params}, {})

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        definition = StudyDefinition(space={}, recipe={"fidelity": {"min": problem.min_fidelity,
                                                                    "max": problem.max_fidelity}},
                                     objectives=problem.objectives, recipe_dir=".")
        store.create_study("b", objectives=definition.objectives_json(), recipe=definition.recipe_json(),
                           strategy=strategy, seed=seed)
        unique: dict[Any, dict[str, Any]] = {}  # a warm front may hold a default: each configuration once
        for config in [*warm, *(problem.defaults if OURS_USE_DEFAULTS else ())]:
            unique.setdefault(config_key(config), dict(config))
        seeds = tuple(unique.values())
        sampler = make_sampler_for(strategy, problem.dims, problem.objectives, seed=seed, seeds=seeds,
                                   options=options,
                                   feasible=counter.feasible if counter is not None else problem.feasible,
                                   known={"trainable_params": counter.count if counter is not None
                                          else problem.params})

        def factory(propose: Any) -> Any:
            return make_scheduler(strategy, propose, problem.objectives, min_fidelity=problem.min_fidelity,
                                  max_fidelity=problem.max_fidelity, seed=seed, options=options, seeds=seeds)

        loop = StudyLoop(store=store, name="b", definition=definition, scheduler_factory=factory, sampler=sampler,
                         executor=InProcessExecutor(), runner=runner, compile_config=lambda c: None,
                         budget=Budget(trials=budget))
        summary = loop.run()
        store.close()
    out = tracker.result()
    if keep_front:
        out["front"] = tracker.front_configs()
    # The loop's own count of the budget agrees with ours (checked here, so a change in how promotions
    # are charged cannot silently skew the comparison).
    if abs(summary.budget_used - tracker.compute) > 1e-6:
        raise RuntimeError(f"{strategy}: the loop counted {summary.budget_used:.4f} full trials, "
                           f"the harness {tracker.compute:.4f}")
    return out


def run_method(problem: Problem, method: str, seed: int, budget: float) -> dict[str, Any]:
    if method in OURS or method in OUR_VARIANTS:
        return run_ours(problem, method, seed, budget)
    if method.startswith("optuna-"):
        return run_optuna(problem, method, seed, budget)
    if method == "syne-moasha":
        return run_moasha(problem, seed, budget)
    if method == "random-search":
        return run_random_search(problem, seed, budget)
    raise ValueError(f"unknown method {method!r}; accepted: {', '.join(OURS + PEERS + VARIANTS)}")


# -- main ---------------------------------------------------------------------------------------------

def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "optuna", "botorch", "syne-tune", "matplotlib"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        out["autopeft_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                capture_output=True, text=True, check=False).stdout.strip() or None
    except OSError:
        out["autopeft_commit"] = None
    return out


_PROBLEM: Problem | None = None
#: Our strategies propose the space's defaults first, as a study does (`--no-defaults` measures without).
OURS_USE_DEFAULTS = True


def _work(args: tuple[str, str, int, float]) -> tuple[str, int, dict[str, Any]]:
    global _PROBLEM
    problem_name, method, seed, budget = args
    if _PROBLEM is None or _PROBLEM.name != problem_name:
        _PROBLEM = PROBLEMS[problem_name]()
    return method, seed, run_method(_PROBLEM, method, seed, budget)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=None, help="full-trial equivalents per run")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated (default: all of {OURS + PEERS}; also {VARIANTS})")
    parser.add_argument("--problems", default="synthetic", help=f"comma-separated of {list(PROBLEMS)}")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (timings share the CPU)")
    parser.add_argument("--no-defaults", action="store_true",
                        help="our strategies do not propose the space's defaults first (to measure what they add)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/search_efficiency.json")
    parser.add_argument("--merge", type=Path, default=None,
                        help="an earlier report (same budget and seeds): its runs of the methods not run now "
                             "are kept, so one method can be rerun without the rest")
    args = parser.parse_args(argv)
    global OURS_USE_DEFAULTS
    OURS_USE_DEFAULTS = not args.no_defaults
    budget = args.budget or (6.0 if args.quick else 30.0)  # quick: the 4 defaults at full fidelity, and 2 more
    seeds = args.seeds or (1 if args.quick else 10)
    names = args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else OURS + PEERS)
    for name in names:
        if name not in OURS + PEERS + VARIANTS:
            parser.error(f"unknown method {name!r}; accepted: {', '.join(OURS + PEERS + VARIANTS)}")
    threads = int(os.environ.get("AUTOPEFT_BENCH_THREADS", "1"))
    at_start = versions()  # the commit the run started from
    import torch

    torch.set_num_threads(threads)
    skipped = {n: reason for n in names if (reason := unavailable(n))}
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", flush=True)
    names = [n for n in names if n not in skipped]
    out = args.out.with_name(args.out.stem + "_quick.json") if args.quick else args.out
    sections = []
    for problem_name in args.problems.split(","):
        started = time.perf_counter()
        # Interleaved: every method once per seed, then the next seed.
        work = [(problem_name, n, s, budget) for s in range(seeds) for n in names]
        runs: dict[str, list[dict[str, Any]]] = {n: [{}] * seeds for n in names}
        if args.jobs > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
                results = pool.imap_unordered(_work, work)
                for method, seed, result in results:
                    runs[method][seed] = result
                    print(f"{problem_name} seed {seed} {method:15s} final hv {result['final_hv']:.4g}  "
                          f"jobs {result['jobs']:4d}  full {result['full_trials']:3d}  "
                          f"own seconds {result['seconds']:.1f}", flush=True)
        else:
            for item in work:
                method, seed, result = _work(item)
                runs[method][seed] = result
                print(f"{problem_name} seed {seed} {method:15s} final hv {result['final_hv']:.4g}  "
                      f"jobs {result['jobs']:4d}  full {result['full_trials']:3d}  "
                      f"own seconds {result['seconds']:.1f}", flush=True)
        if args.merge is not None:
            earlier = previous_runs(json.loads(args.merge.read_text()), problem_name, budget, seeds)
            merged = {**{n: r for n, r in earlier.items() if n not in runs}, **runs}
            order = OURS + PEERS + VARIANTS
            runs = dict(sorted(merged.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99))
        problem = _PROBLEM if _PROBLEM is not None and _PROBLEM.name == problem_name else PROBLEMS[problem_name]()
        section = summarise(problem, budget, runs, skipped)
        section["seconds"] = time.perf_counter() - started
        png = out.with_name(f"{out.stem}_{problem_name}.png")
        section["figure"] = plot(section, png)
        if section["figure"] is not None:
            section["figure"] = os.path.relpath(section["figure"], ROOT) if png.is_relative_to(ROOT) else str(png)
        sections.append(section)
        print_table(section, seeds)
    report = {"benchmark": "search_efficiency", "quick": args.quick, "date": dt.date.today().isoformat(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
              "threads": threads, "jobs": args.jobs, "versions": at_start, "seeds": seeds,
              "ours_propose_defaults_first": OURS_USE_DEFAULTS,
              "budget_full_trials": budget, "methods": names, "skipped": skipped, "problems": sections,
              "merged_from": None if args.merge is None else {"path": str(args.merge), "kept_runs_of": sorted(
                  {n for sec in sections for n in sec["methods"]} - set(names))}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
