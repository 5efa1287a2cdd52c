"""Real studies on a task the blackbox never saw (issue 16, part 4): the default strategy against the best
peer, at equal budget, several seeds, each ending with its chosen configuration trained and scored on dev.

Each study is what a user runs, through the CLI:

- ours: ``autopeft study run --strategy mobo-hyperband`` (the space's defaults proposed first);
- the best peer on the blackbox (Optuna's TPE, multivariate and grouped, 10 start-up trials):
  ``autopeft study run --strategy tpe --no-defaults``, autopeft's wrapper of that same Optuna sampler
  (`search/samplers/optuna_sampler.py`; it adds only the constant liar for parallel workers), every trial
  at full fidelity as Optuna runs a multi-objective study;

then ``autopeft pareto --format json`` (the front, and its hypervolume from the task's chance score and the
space's largest count, as the blackbox measures it), ``autopeft export`` (the best score, the default
choice) and ``autopeft train`` (the exported configuration at full fidelity, scored on the held-back dev
split). Studies live in one SQLite store in the output folder; a rerun skips the studies already done, so
the runs can be spread over several sessions: ``--max-minutes N`` starts no new study after N minutes, and
a study cut off part-way is resumed (a trial whose checkpoint is gone, as on another machine, trains again
from the start).

The held-out task is CoLA (`real_studies/cola.yaml`): MiniLM-L6 with adapters learns it slowly (at two
passes a study's first five full trials all stayed at the majority class, Matthews 0), so its ladder goes
to 32,768 examples (four passes over a pool of 8,192). On CPU a full trial takes about 4 minutes on one
core and a study of budget 10 about 50 minutes (``--jobs 2`` runs two at once on two cores); on a GPU it
takes a few minutes (``--device cuda``).

Usage::

    python benchmarks/real_studies.py --device cuda                 # CoLA, lora.yaml, budget 10, 3 seeds
    python benchmarks/real_studies.py --quick                       # CI: the demo task, budget 2, 1 seed
    nohup nice -n 10 python benchmarks/real_studies.py --jobs 2 --max-minutes 60 > /tmp/real.log 2>&1 &   # CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import cpu_model  # noqa: E402
from benchmarks.search_problem import hypervolume_share  # noqa: E402

#: (label, strategy, extra `study run` options)
METHODS = (("mobo-hyperband", "mobo-hyperband", ()), ("optuna-tpe", "tpe", ("--no-defaults",)))
RECIPE = ROOT / "benchmarks/real_studies/cola.yaml"
SPACE = ROOT / "search_spaces/lora.yaml"
OUT = ROOT / "benchmarks/results/real_studies.json"


def autopeft(*args: str, env: dict[str, str]) -> str:
    """Run one CLI command; its stdout, or a RuntimeError with the command's last words."""
    command = Path(sys.executable).parent / "autopeft"  # the console script installed beside this Python
    proc = subprocess.run([str(command), *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"autopeft {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def front_hypervolume(entries: list[dict[str, Any]], chance: float, max_params: int) -> float:
    """The front's hypervolume from (chance, the space's largest count), as the blackbox measures it."""
    points = [(float(e["score"]), float(e["trainable_params"])) for e in entries]
    return hypervolume_share(points, chance, max_params)


def study_status(storage: str, name: str) -> str | None:
    """The study's status in the store ("complete", "paused", ...), None where it is not there yet."""
    from autopeft.store import NotFoundError, Store

    store = Store(storage, read_only=True)
    try:
        return str(store.get_study(name).status.value)
    except NotFoundError:
        return None
    finally:
        store.close()


def run_one(label: str, strategy: str, extra: tuple[str, ...], seed: int, args: argparse.Namespace,
            folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """One study, its front, and its exported best configuration trained and scored on dev."""
    storage = f"sqlite:///{folder / 'studies.db'}"
    name = f"{args.recipe.stem}-{label}-s{seed}"
    device = (("--device", args.device) if args.device else ()) + (("--threads", str(args.threads)) if args.threads
                                                                   else ())
    started = time.perf_counter()
    status = study_status(storage, name) if (folder / "studies.db").exists() else None
    if status is None:
        autopeft("study", "run", "--space", str(args.space), "--trial", str(args.recipe), "--strategy", strategy,
                 "--seed", str(seed), "--budget", f"{args.budget:g}", "--workers", str(args.workers), "--name", name,
                 "--storage", storage, "-q", *extra, *device, env=env)
    elif status != "complete":
        autopeft("study", "resume", name, "--storage", storage, "-q", *device, env=env)
    front = json.loads(autopeft("pareto", name, "--format", "json", "--storage", storage, env=env))
    exported = folder / name
    trained = folder / f"{name}-trained"
    if not (trained / "metrics.json").exists():
        autopeft("export", name, "--out", str(exported), "--storage", storage, env=env)
        autopeft("train", str(exported / "autopeft.yaml"), "--out", str(trained), *device, env=env)
    metrics = json.loads((trained / "metrics.json").read_text())
    return {"method": label, "strategy": strategy, "seed": seed, "study": name, "front": front,
            "exported": metrics, "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the demo task and quickstart space, budget 2, 1 seed")
    parser.add_argument("--recipe", type=Path, default=None)
    parser.add_argument("--space", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=None, help="full trials per study (default 10)")
    parser.add_argument("--seeds", type=int, default=None, help="default 3")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's)")
    parser.add_argument("--folder", type=Path, default=None, help="the studies' store and exports (resumable)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no new study after this many minutes (those in progress finish)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="studies at a time, each in its own processes (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per trial (default: the cores split between --jobs)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.recipe = args.recipe or (ROOT / "trials/demo.yaml" if args.quick else RECIPE)
    args.space = args.space or (ROOT / "search_spaces/quickstart.yaml" if args.quick else SPACE)
    args.budget = args.budget or (2.0 if args.quick else 10.0)
    seeds = args.seeds or (1 if args.quick else 3)
    out = args.out.with_name(args.out.stem + "_quick.json") if args.quick else args.out
    folder = args.folder or out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AUTOPEFT_DATA_DIR", str(ROOT.parent / "shared/data/glue"))  # the GLUE files
    env = dict(os.environ)
    from autopeft.engine.checks import check_task_data, checked_space
    from autopeft.train.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    task = check_task_data(recipe, source=str(args.recipe))
    chance = task.chance if task is not None else 0.0  # the reference score a study of it uses
    _, counter = checked_space(args.space, recipe, recipe_source=str(args.recipe))
    _, max_params = counter.bounds()
    if args.jobs > 1 and args.threads is None and args.device in (None, "cpu"):
        args.threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)  # the cores shared, not oversubscribed
    report = {"benchmark": "real_studies", "quick": args.quick, "date": dt.date.today().isoformat(),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
              "recipe": os.path.relpath(args.recipe, ROOT), "space": os.path.relpath(args.space, ROOT),
              "budget_full_trials": args.budget, "seeds": seeds, "workers": args.workers, "device": args.device,
              "jobs": args.jobs, "threads_per_trial": args.threads,
              "reference_point": {"score": chance, "trainable_params": max_params}, "runs": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    order = [(seed, *method) for seed, method in itertools.product(range(seeds), METHODS)]
    rank = {(seed, label): i for i, (seed, label, _, _) in enumerate(order)}
    lock = threading.Lock()

    def one(seed: int, label: str, strategy: str, extra: tuple[str, ...]) -> None:
        run = run_one(label, strategy, extra, seed, args, folder, env)
        run["front_hypervolume"] = front_hypervolume(run["front"], chance, max_params)
        exported = run["exported"]
        with lock:  # kept in the order of `order`, whichever study ends first
            report["runs"].append(run)
            report["runs"].sort(key=lambda r: rank[(r["seed"], r["method"])])
            print(f"{run['study']}: front of {len(run['front'])}, hypervolume {run['front_hypervolume']:.4f}; "
                  f"exported: validation {exported['validation_score']:.4f}, dev {exported['metric']} "
                  f"{exported['dev_score']:.4f}, {exported['trainable_params']:,} params; {run['seconds']:.0f} s",
                  flush=True)
            # After every study, so a run stopped part-way leaves what it measured.
            out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    # Each study is a chain of CLI processes, so threads are enough to run several at once.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        running: set[Future[None]] = set()
        for item in order:
            if len(running) >= args.jobs:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
            if args.max_minutes is not None and time.monotonic() - started >= args.max_minutes * 60:
                print(f"stopping after {args.max_minutes:g} minutes, as asked; a rerun goes on from here", flush=True)
                break
            running.add(pool.submit(one, *item))
        for future in running:
            future.result()
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
