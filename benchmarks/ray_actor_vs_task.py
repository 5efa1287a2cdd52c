"""Ray tasks or actors for trials: the start-up seconds a long-lived actor would save, measured.

The question (issue 15): an actor keeps its process, with torch and transformers imported and whatever
the process caches, between the trials it runs; a task may get a fresh worker process each time. This
times N consecutive demo-recipe trials (real MiniLM-L6 training, trials/demo.yaml at its lowest
fidelity, configurations sampled from search_spaces/quickstart.yaml; `run_trial`, what a study runs) on
a local Ray cluster started here (1 CPU, 1 logical GPU: one trial at a time, as on one GPU), three ways:

- ``task``: `RayExecutor` itself (one Ray task per trial, the options `--executor ray` uses). Ray may hand
  a task an idle worker process that ran an earlier one: it does here (``worker_pids`` says how many
  processes ran the N trials).
- ``task_fresh``: the same task with ``max_calls=1``, a new worker process per trial: what Ray gives a
  function declared ``@ray.remote(num_gpus=1)`` by default (it never reuses GPU workers then), so the
  cost of a fresh process per trial.
- ``actor``: one actor (1 CPU, 1 GPU) created for the N trials, each a method call that runs the same
  `run_on_ray(run_trial, task)`; the first call also waits for the actor's process to start.

Runs of the three are interleaved (the order rotates every repeat), ``--repeats`` times (>= 3 for the
figures). Per trial: ``wall_s`` from submit to result in the driver, ``train_s`` the trial's own
``train_seconds`` metric, ``startup_s`` = wall - train (process start and imports where paid, model,
tokenizer and data loading, evaluation, result transfer: all but the training steps). Per way: medians
of ``startup_s`` over the first trial of each run and over the later ones (``steady``), and the saving
of the actor against each task way.

Then ``gpu_reuse``: on a second local cluster of 2 CPUs and 2 logical GPUs, 6 rounds of two tasks built
as `RayExecutor` builds them; the worker processes that ran tasks of both GPUs are listed. Such a reuse
is harmless without CUDA, but CUDA reads ``CUDA_VISIBLE_DEVICES`` once per process: a reused worker that
trained on GPU 0 would train its next trial on GPU 0 again, whatever GPU Ray assigned to it.

Full run:  python benchmarks/ray_actor_vs_task.py                      (4 trials per run, 3 repeats)
Quick:     python benchmarks/ray_actor_vs_task.py --quick              (2 trials, 1 repeat)
Output:    benchmarks/results/ray_actor_vs_task.json (--out to change)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.engine.task import TrialOutcome, TrialTask  # noqa: E402

WAYS = ("task", "task_fresh", "actor")
OBJECT_STORE_BYTES = 80_000_000


def demo_tasks(count: int, seed: int) -> list[TrialTask]:
    """``count`` demo-recipe trials at the lowest fidelity, configurations sampled from the quickstart space."""
    import yaml

    from autopeft.space.space import load_space
    from autopeft.train.counting import ParamCounter
    from autopeft.train.recipe import load_recipe

    recipe_path, space = ROOT / "trials/demo.yaml", load_space(ROOT / "search_spaces/quickstart.yaml")
    recipe = load_recipe(recipe_path)
    layers = ParamCounter.for_recipe(recipe, space).num_layers
    rng = random.Random(seed)
    tasks = []
    for number in range(count):
        config = space.sample(layers, rng)
        compiled = space.compile(config, layers).model_dump(mode="json", exclude_none=True)
        tasks.append(TrialTask(study="bench", number=number, config=config, trial_config=compiled,
                               recipe=yaml.safe_load(recipe_path.read_text(encoding="utf-8")),
                               recipe_dir=str(recipe_path.parent), fidelity=recipe.fidelity.min, threads=1))
    return tasks


class TrialActor:
    """Runs trials one after the other in one process, as `RayExecutor`'s tasks run them."""

    def run(self, task: TrialTask) -> TrialOutcome:
        from autopeft.engine.ray_executor import run_on_ray
        from autopeft.engine.worker import run_trial

        return run_on_ray(run_trial, task)


def _row(way: str, repeat: int, index: int, wall: float, outcome: TrialOutcome) -> dict[str, Any]:
    if not outcome.ok:
        raise RuntimeError(f"trial {outcome.number} ({way}) failed: {outcome.error}")
    train = float(outcome.metrics["train_seconds"])
    return {"way": way, "repeat": repeat, "index": index, "wall_s": round(wall, 3), "train_s": round(train, 3),
            "startup_s": round(wall - train, 3), "pid": int(str(outcome.worker).split(":")[2])}


def run_way(way: str, tasks: list[TrialTask], repeat: int) -> list[dict[str, Any]]:
    """The trials one after the other (submit, wait for the result, next), the ``way`` given."""
    import ray

    from autopeft.engine.ray_executor import RayExecutor, run_on_ray
    from autopeft.engine.worker import run_trial

    rows = []
    if way == "task":
        executor = RayExecutor(1)
        try:
            for index, task in enumerate(tasks):
                started = time.perf_counter()
                outcome = executor.submit(run_trial, executor.place(task)).result()
                rows.append(_row(way, repeat, index, time.perf_counter() - started, outcome))
        finally:
            executor.shutdown()  # leaves the connection: this process made it
    elif way == "task_fresh":
        remote = ray.remote(max_retries=0, max_calls=1, num_cpus=1, num_gpus=1)(run_on_ray)
        for index, task in enumerate(tasks):
            started = time.perf_counter()
            outcome = ray.get(remote.remote(run_trial, task))
            rows.append(_row(way, repeat, index, time.perf_counter() - started, outcome))
    else:
        actor: Any = ray.remote(num_cpus=1, num_gpus=1, max_restarts=0)(TrialActor).remote()
        try:
            for index, task in enumerate(tasks):
                started = time.perf_counter()  # the first call waits for the actor's process too
                outcome = ray.get(actor.run.remote(task))
                rows.append(_row(way, repeat, index, time.perf_counter() - started, outcome))
        finally:
            ray.kill(actor)  # frees its CPU and GPU for the next way
            time.sleep(1.0)
    return rows


def _probe(i: int) -> tuple[int, str | None]:
    time.sleep(0.5 + 0.3 * (i % 2))
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def gpu_reuse(temp: Path, rounds: int = 6) -> dict[str, Any]:
    """Worker process -> the GPUs (CUDA_VISIBLE_DEVICES) its tasks were given, tasks as the executor builds them."""
    import ray

    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
             log_to_driver=False, _temp_dir=str(temp))
    try:
        remote = ray.remote(max_retries=0, retry_exceptions=False)(_probe).options(num_cpus=1, num_gpus=1)
        seen: dict[int, set[str | None]] = {}
        for round_ in range(rounds):
            for pid, visible in ray.get([remote.remote(i + round_) for i in range(2)]):
                seen.setdefault(pid, set()).add(visible)
    finally:
        ray.shutdown()
    both = [pid for pid, gpus in seen.items() if len(gpus) > 1]
    return {"rounds": rounds, "gpus_per_process": {str(pid): sorted(map(str, g)) for pid, g in seen.items()},
            "processes_given_both_gpus": len(both)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    ways: dict[str, Any] = {}
    for way in WAYS:
        mine = [r for r in rows if r["way"] == way]
        if not mine:
            continue
        runs = sorted({r["repeat"] for r in mine})
        ways[way] = {
            "trials": len(mine),
            "startup_s_median": median([r["startup_s"] for r in mine]),
            "startup_s_first_median": median([r["startup_s"] for r in mine if r["index"] == 0]),
            "startup_s_steady_median": median([r["startup_s"] for r in mine if r["index"] > 0]),
            "startup_s_steady_min_max": [min((r["startup_s"] for r in mine if r["index"] > 0), default=None),
                                         max((r["startup_s"] for r in mine if r["index"] > 0), default=None)],
            "train_s_median": median([r["train_s"] for r in mine]),
            "wall_s_median": median([r["wall_s"] for r in mine]),
            "worker_pids_per_run": [len({r["pid"] for r in mine if r["repeat"] == run}) for run in runs],
        }
    saving: dict[str, Any] = {}
    if "actor" in ways:
        for other in ("task", "task_fresh"):
            if other not in ways:
                continue
            a, t = ways["actor"], ways[other]
            saving[f"actor_vs_{other}"] = {
                key: None if t[key] is None or a[key] is None else round(t[key] - a[key], 3)
                for key in ("startup_s_median", "startup_s_first_median", "startup_s_steady_median")}
    return {"ways": ways, "saving_s_per_trial": saving}


def decide(summary: dict[str, Any], threshold: float = 2.0) -> str:
    saving = summary["saving_s_per_trial"].get("actor_vs_task", {}).get("startup_s_steady_median")
    fresh = summary["saving_s_per_trial"].get("actor_vs_task_fresh", {}).get("startup_s_steady_median")
    if saving is None:
        return "not measured"
    if saving > threshold:
        return f"switch to actors: an actor saves {saving:.2f} s per trial against the executor's tasks"
    text = (f"keep tasks: an actor saves {saving:.2f} s per trial against the executor's tasks (Ray reuses "
            f"their worker process), under the {threshold:g} s that would justify actors")
    if fresh is not None:
        text += f"; against a fresh worker process per trial it would save {fresh:.2f} s"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="consecutive trials per run (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way, interleaved (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 trials, 1 repeat: a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ray_actor_vs_task.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.repeats = 2, 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A new local ray.init() would otherwise turn on token authentication and write ~/.ray/auth_token,
    # which every later `ray start --head` on this machine then picks up (its worker nodes do not).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    tasks = demo_tasks(args.trials, seed=0)
    temp = Path(tempfile.mkdtemp(prefix="aprb", dir="/tmp"))  # short: Ray's socket paths have a length limit
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    # A local cluster of our own (ended by ray.shutdown): 1 CPU and 1 logical GPU, one trial at a time.
    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
             log_to_driver=False, _temp_dir=str(temp),
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}})
    try:
        for repeat in range(args.repeats):
            order = WAYS[repeat % len(WAYS):] + WAYS[:repeat % len(WAYS)]
            for way in order:
                batch = run_way(way, tasks, repeat)
                rows += batch
                print(f"repeat {repeat} {way:10s} startup_s " + " ".join(f"{r['startup_s']:.2f}" for r in batch)
                      + f"  (train_s {statistics.median(r['train_s'] for r in batch):.2f})", flush=True)
    finally:
        ray.shutdown()
    try:
        reuse = gpu_reuse(temp / "g")
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    print(f"gpu_reuse: {reuse}", flush=True)
    summary = summarise(rows)
    result = {
        "benchmark": "ray_actor_vs_task",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "ray": ray.__version__, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"trials_per_run": args.trials, "repeats": args.repeats, "quick": args.quick,
                     "recipe": "trials/demo.yaml", "space": "search_spaces/quickstart.yaml",
                     "fidelity": tasks[0].fidelity, "cluster": "local, 1 CPU, 1 logical GPU",
                     "seconds": round(time.perf_counter() - started, 1)},
        "summary": summary,
        "decision": decide(summary),
        "gpu_reuse": reuse,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(result["decision"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
