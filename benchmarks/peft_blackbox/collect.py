"""The PEFT blackbox's data: real training runs of search-space configurations, scored at every rung.

Issue 16, part 1. Each configuration of a fixed list is trained ONCE to the top fidelity with the
project's own trial machinery (`TrialJob.run(fidelity)` continues from where it stopped, as a study's
promoted trial does), and scored on the dev split at every rung of the fidelity ladder on the way, so
one run gives its score at every fidelity. The learning-rate schedule spans the recipe's top fidelity,
so the score at rung r is what a Hyperband trial paused at r would have reported.

Settings (recipes `sst2.yaml`, `mrpc.yaml` next to this file; `mrpc_long.yaml`, task ``mrpc-long``, trains
MRPC 4.8 passes, rungs 1,024 to 16,384, since at `mrpc.yaml`'s ladder it stays at the majority-class F1):

- model: the packaged MiniLM-L6 (all-MiniLM-L6-v2, 6 layers); nothing is downloaded;
- tasks: GLUE SST-2 and MRPC from ``../shared/data/glue`` (or ``$AUTOPEFT_DATA_DIR`` / ``--data-dir``);
  CoLA is held back for the real studies of issue 16 part 4;
- training pool: the first 4,096 training examples left after a seeded 256-example validation slice
  (MRPC has only ~3,400, so its top fidelity is 1.2 passes), ``max_length`` 64, batch 32, warmup 6 %;
- fidelity (examples seen): 512 to 4,096 with eta 2, so rungs 512, 1,024, 2,048 and 4,096;
- score: the task's GLUE metric on the whole dev split (SST-2 accuracy on 872 sentences, MRPC F1 on
  408 pairs); the validation slice's score (what a study would see) is recorded too (``val_score``);
- configurations, per (space, task), the same list for both tasks: the practitioners' defaults the
  space can express (LoRA r=8, alpha 16, on query and value in every layer; the head alone; in
  ``mixed`` also IA3 and a parallel adapter of size 64 in every layer), then ``--configs`` (default
  200) Sobol proposals of autopeft's `RandomSampler` over ``space.dimensions(6)`` (seed 0, feasible
  ones only), all with training seed 0; every tenth configuration of the list (~10 %) is also trained
  with seeds 1, 2 and 3 to measure run-to-run noise, after the seed-0 runs of its block of ten.

Output: ``benchmarks/data/peft_blackbox.csv``, one row per (space, task, config id, seed, fidelity):
the configuration (JSON), the compiled plan's exact trainable parameter count (checked against
`ParamCounter`), the dev score and metrics, the train seconds so far, examples/s, torch and
transformers versions, the device and the machine. A configuration's rows are appended when its run
ends; rows already in the file are skipped, so the table is built over several runs in the
background (``--max-minutes N`` stops cleanly after the configuration in progress).

Cost, measured on this 2-core CPU (AMD EPYC, 2 threads, ``nice -n 10``), shared with other jobs (1-minute
load average 2-9 on its 2 cores while it ran), per run of 4,096 examples with its four evaluations:

- SST-2, lora.yaml configurations: 30-415 s at load 2-6 (median ~140 s; about a third of it evaluating
  dev and validation at the four rungs), 250-490 s for the LoRA default at load 6-9; configurations
  that adapt only the upper layers are cheapest (the frozen lower layers' outputs are cached); the
  head alone: 46 s;
- MRPC, LoRA r=8 on query and value: 200 s at load ~3 (244 CPU seconds; its pairs fill the 64 tokens);
- so the full table (1,064 runs with the defaults) is about 45-55 hours of this machine, built over
  several background runs; a quiet machine would take less, as the CPU seconds show.

On a GPU it goes much faster: pass ``--device cuda`` (or leave the recipes' ``device: auto``). Not measured
here; MiniLM-L6 at batch 32 x 64 tokens is bound by step latency there (milliseconds a step), so a run
of 128 steps and four evaluations takes seconds and the whole table about an hour.

Usage::

    python benchmarks/peft_blackbox/collect.py --space lora --task sst2 --max-minutes 30
    python benchmarks/peft_blackbox/collect.py                    # every list, to the end
    taskset -c 0 python benchmarks/peft_blackbox/collect.py --threads 1 --shard 0/2 &   # one collector per core,
    taskset -c 1 python benchmarks/peft_blackbox/collect.py --threads 1 --shard 1/2 &   # same lists, same table
    python benchmarks/peft_blackbox/collect.py --device cuda      # on a GPU
    python benchmarks/peft_blackbox/collect.py --quick --out /tmp/q.csv   # CI: 2 configs, about 30 s
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fcntl
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from autopeft.errors import describe_exception  # noqa: E402
from benchmarks.machine_info import cpu_model  # noqa: E402

SPACES = {"lora": ROOT / "search_spaces/lora.yaml", "mixed": ROOT / "search_spaces/mixed.yaml"}
TASKS = {"sst2": HERE / "sst2.yaml", "mrpc": HERE / "mrpc.yaml", "mrpc-long": HERE / "mrpc_long.yaml"}
DEFAULT_OUT = ROOT / "benchmarks/data/peft_blackbox.csv"
ETA = 2.0
NUM_LAYERS = 6
SOBOL_SEED = 0
NOISE_EVERY = 10  # every tenth configuration of a list gets the noise seeds
NOISE_SEEDS = (1, 2, 3)
# --quick (CI): two configurations of lora.yaml on SST-2, 64 -> 128 examples, a tiny dev subset.
QUICK: dict[str, Any] = {"space": "lora", "task": "sst2", "configs": 2, "min": 64, "max": 128, "pool": 512,
         "validation": 32, "dev": 64}

COLUMNS = ("space", "task", "recipe", "config_id", "seed", "fidelity", "rung", "status", "score", "metric",
           "dev_metrics", "val_score", "train_loss", "trainable_params", "trainable_share", "train_seconds",
           "eval_seconds", "cpu_seconds", "load_avg", "examples_per_second", "error", "config", "device",
           "threads", "torch", "transformers", "machine", "finished_at")


@dataclass(frozen=True)
class Run:
    """One training run: a configuration of a (space, task) list with one training seed."""

    space: str
    task: str
    config_id: str
    seed: int
    config: dict[str, Any] = field(compare=False)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.space, self.task, self.config_id, self.seed


# -- the configurations ----------------------------------------------------------------------------------
def default_configs(space_name: str, dims: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What practitioners try first, where the space can express it (learning rates: common choices)."""
    layers = [f"layer_{i}" for i in range(NUM_LAYERS)]

    def every_layer(lr: float, **values: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"learning_rate": lr}
        if "lr_schedule" in dims:
            config["lr_schedule"] = "linear"
        for layer in layers:
            config.update({f"{layer}.{k}": v for k, v in values.items()})
        return config

    if space_name == "lora":
        return [("default-lora-r8-qv", every_layer(5e-4, method="lora", roles=["query", "value"], rank=8, alpha=16)),
                ("default-head", every_layer(1e-3, method="none"))]
    if space_name == "mixed":  # its LoRA is on query and value with alpha 16
        return [("default-lora-r8-qv", every_layer(5e-4, method="lora", rank=8)),
                ("default-head", every_layer(1e-3, method="none")),
                ("default-ia3", every_layer(3e-3, method="ia3")),
                ("default-parallel-64", every_layer(1e-3, method="parallel_adapter", size=64))]
    return []


def configurations(space_name: str, recipe: Any, n_sobol: int) -> list[tuple[str, dict[str, Any]]]:
    """The fixed list of a space: its defaults, then ``n_sobol`` seeded Sobol proposals (prefix-stable)."""
    from autopeft.engine.definition import make_objectives
    from autopeft.search.history import History
    from autopeft.search.samplers import make_sampler
    from autopeft.space.space import load_space
    from autopeft.train.counting import ParamCounter

    space = load_space(SPACES[space_name])
    counter = ParamCounter.for_recipe(recipe, space)
    dims = space.dimensions(counter.num_layers)
    out = []
    for name, config in default_configs(space_name, dims):
        space.compile(config, counter.num_layers, source=name)  # fails loudly if a space edit broke a default
        if counter.feasible(config):
            out.append((name, config))
    objectives = make_objectives(("score", "trainable_params"), base_params=counter.base_params)
    sampler = make_sampler("random", dims, objectives, seed=SOBOL_SEED, feasible=counter.feasible)
    proposals = sampler.propose(n_sobol, History()) if n_sobol > 0 else []
    out += [(f"sobol-{i:04d}", dict(c)) for i, c in enumerate(proposals)]
    return out


def runs_of(space: str, task: str, configs: list[tuple[str, dict[str, Any]]], *, noise: bool = True) -> list[Run]:
    """Seed 0 for each block of ten configurations, then seeds 1-3 of the block's first one.

    A table built over several short sessions should cover as many configurations as it can, so the
    repeats are only a quarter of the runs; but the surrogate needs the noise measured before it can be
    used at all, so the first repeats come after the first ten configurations, not after the last.
    """
    runs = []
    for start in range(0, len(configs), NOISE_EVERY):
        block = configs[start:start + NOISE_EVERY]
        runs += [Run(space, task, config_id, 0, config) for config_id, config in block]
        if noise:
            config_id, config = block[0]
            runs += [Run(space, task, config_id, seed, config) for seed in NOISE_SEEDS]
    return runs


# -- the table -------------------------------------------------------------------------------------------
def read_done(out: Path) -> dict[tuple[str, str, str, int], set[int]]:
    """Fidelities already in the table per run key; a failed run counts as done at every rung."""
    done: dict[tuple[str, str, str, int], set[int]] = {}
    if not out.exists():
        return done
    with out.open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["space"], row["task"], row["config_id"], int(row["seed"]))
            done.setdefault(key, set()).add(-1 if row["status"] == "failed" else int(row["fidelity"]))
    return done


def append_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    """Append one run's rows under an exclusive lock: collectors of other shards write the same file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", newline="") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        new = handle.seek(0, os.SEEK_END) == 0
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def machine_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{platform.node()}: {torch.cuda.get_device_name(torch.device(device))}"
    return f"{platform.node()}: {cpu_model()}, {os.cpu_count()} cores"


def _load_avg() -> str:
    """The machine's 1-minute load average: how shared the cores were while the seconds were measured."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return ""


# -- one run ---------------------------------------------------------------------------------------------
def train_run(run: Run, recipe: Any, rungs: list[int], *, counter: Any, space: Any,
              dev_limit: int | None = None) -> list[dict[str, Any]]:
    """Train ``run`` once to the top rung; one row per rung (a failed run ends with a failed row)."""
    import torch
    import transformers

    from autopeft.train.job import TrialJob
    from autopeft.train.tasks.encode import EncodedSplit

    recipe = recipe.model_copy(update={"training": recipe.training.model_copy(update={"seed": run.seed})})
    expected = counter.count(run.config)
    base = {"space": run.space, "task": run.task, "recipe": recipe.name, "config_id": run.config_id,
            "seed": run.seed, "config": json.dumps(run.config, sort_keys=True, separators=(",", ":")),
            "trainable_params": expected, "torch": torch.__version__, "transformers": transformers.__version__}
    rows: list[dict[str, Any]] = []
    train_seconds = eval_seconds = 0.0
    cpu_started = time.process_time()
    job: TrialJob | None = None
    try:
        job = TrialJob(recipe, space.compile(run.config, NUM_LAYERS, source=run.config_id),
                       config_source=f"{run.space}/{run.config_id}")
        session = job.session
        if dev_limit is not None:  # a fixed subset: the first examples of the dev file
            dev = session.splits["dev"]
            session.splits["dev"] = EncodedSplit(
                dev.input_ids[:dev_limit], dev.labels[:dev_limit],
                None if dev.token_type_ids is None else dev.token_type_ids[:dev_limit])
        if session.info.trainable_params != expected:
            raise RuntimeError(f"ParamCounter says {expected} trainable parameters, the compiled plan has "
                               f"{session.info.trainable_params}")
        for rung, fidelity in enumerate(rungs):
            started = time.perf_counter()
            result = job.run(fidelity, evaluate_dev=True)
            train_seconds += result.train_seconds
            eval_seconds += time.perf_counter() - started - result.train_seconds
            row = {**base, "rung": rung, "fidelity": fidelity, "status": result.status.value,
                   "device": result.device, "threads": result.threads,
                   "machine": machine_name(result.device or "cpu"), "train_seconds": round(train_seconds, 3),
                   "eval_seconds": round(eval_seconds, 3), "error": result.error or "",
                   "cpu_seconds": round(time.process_time() - cpu_started, 1), "load_avg": _load_avg(),
                   "trainable_share": f"{result.trainable_share:.6g}",
                   "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            if result.status.value != "complete" or not result.dev_metrics:
                rows.append({**row, "status": "failed", "error": result.error or "no dev score"})
                break
            metric = session.task.metric
            rows.append({**row, "score": f"{result.dev_metrics[metric]:.6f}", "metric": metric,
                         "dev_metrics": json.dumps({k: round(v, 6) for k, v in result.dev_metrics.items()}),
                         "val_score": "" if result.score is None else f"{result.score:.6f}",
                         "train_loss": "" if result.train_loss is None else f"{result.train_loss:.5f}",
                         "examples_per_second": f"{fidelity / train_seconds:.2f}" if train_seconds else ""})
    except Exception as err:  # a configuration the model cannot take: recorded, the table goes on
        rows.append({**base, "rung": len(rows), "fidelity": rungs[min(len(rows), len(rungs) - 1)],
                     "status": "failed", "error": describe_exception(err),
                     "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
    finally:
        job = None  # free the model before the next run builds its own
        gc.collect()
    return rows


# -- the driver ------------------------------------------------------------------------------------------
def load_blackbox_recipe(task: str, *, data_dir: Path, threads: int | None, device: str | None,
                         quick: bool) -> Any:
    from autopeft.train.recipe import load_recipe
    from autopeft.train.resources import with_resources

    recipe = load_recipe(TASKS[task])
    task_spec = recipe.task.model_copy(update={"data_dir": data_dir})
    update: dict[str, Any] = {"task": task_spec}
    if quick:
        update["name"] = f"{recipe.name}-quick"
        update["task"] = task_spec.model_copy(update={"max_train_examples": QUICK["pool"],
                                                      "validation_size": QUICK["validation"]})
        update["fidelity"] = recipe.fidelity.model_copy(update={"min": QUICK["min"], "max": QUICK["max"]})
    return with_resources(recipe.model_copy(update=update), threads=threads, device=device)


def plan(args: argparse.Namespace, data_dir: Path) -> Iterator[tuple[Run, Any, list[int], Any, Any]]:
    """Every run of the chosen lists, with its recipe, rungs, counter and space."""
    from autopeft.search.rungs import rung_levels
    from autopeft.space.space import load_space
    from autopeft.train.counting import ParamCounter

    lists = []
    for task in args.task:
        recipe = load_blackbox_recipe(task, data_dir=data_dir, threads=args.threads, device=args.device,
                                      quick=args.quick)
        rungs = rung_levels(recipe.fidelity.min, recipe.fidelity.max, ETA)
        for space_name in args.space:
            space = load_space(SPACES[space_name])
            counter = ParamCounter.for_recipe(recipe, space)
            configs = configurations(space_name, recipe, args.configs)
            if args.quick:
                configs = [configs[0], next(c for c in configs if c[0].startswith("sobol-"))]
            runs = runs_of(space_name, task, configs, noise=not args.quick)
            lists.append([(run, recipe, rungs, counter, space) for run in runs])
    # Round robin over the lists, so a table cut short by --max-minutes covers every (space, task) evenly.
    for i in range(max(map(len, lists), default=0)):
        for runs_of_list in lists:
            if i < len(runs_of_list):
                yield runs_of_list[i]


def shard_spec(text: str) -> tuple[int, int]:
    """``K/N`` of ``--shard``: the plan's position modulo N, so the split does not depend on what is done."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 0/2, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"K must be in 0..N-1, got {text!r}")
    return k, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", nargs="+", choices=sorted(SPACES), default=["lora", "mixed"])
    parser.add_argument("--task", nargs="+", choices=sorted(TASKS), default=["sst2", "mrpc"])
    parser.add_argument("--configs", type=int, default=200, help="Sobol configurations per list (default 200)")
    parser.add_argument("--limit", type=int, default=None, help="train at most this many runs in this call")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no new run after this many minutes (the one in progress finishes)")
    parser.add_argument("--out", type=Path, default=None, help=f"the CSV (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="GLUE folder (default $AUTOPEFT_DATA_DIR, else ../shared/data/glue from the repo root)")
    parser.add_argument("--device", default=None, help="auto (the recipes' default), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (the recipes say 2)")
    parser.add_argument("--shard", type=shard_spec, default=(0, 1), metavar="K/N",
                        help="train only every N-th run of the plan, from the K-th (0-based): N collectors on "
                             "one table, one per core, share the work without training a run twice")
    parser.add_argument("--quick", action="store_true",
                        help="CI: two lora.yaml configurations on SST-2, fidelity 64 -> 128, 64 dev sentences")
    args = parser.parse_args(argv)
    if args.quick:
        args.space, args.task, args.configs = [QUICK["space"]], [QUICK["task"]], QUICK["configs"]
        if args.out is None:
            parser.error("--quick needs --out (it must not write into the blackbox table)")
    out: Path = args.out or DEFAULT_OUT
    data_dir = args.data_dir or Path(os.environ.get("AUTOPEFT_DATA_DIR") or ROOT.parent / "shared/data/glue")
    if not (data_dir / "sst2").is_dir():
        parser.error(f"no GLUE data in {data_dir} (give --data-dir or set AUTOPEFT_DATA_DIR)")
    data_dir = data_dir.resolve()

    from autopeft.train.verbosity import quiet_library_warnings

    quiet_library_warnings()
    done = read_done(out)
    todo = []
    shard, shards = args.shard
    for i, (run, recipe, rungs, counter, space) in enumerate(plan(args, data_dir)):
        have = done.get(run.key, set())
        if i % shards == shard and -1 not in have and not set(rungs) <= have:
            todo.append((run, recipe, rungs, counter, space, have))
    if args.limit is not None:
        todo = todo[: args.limit]
    print(f"{len(todo)} runs to train into {out} ({sum(len(v) for v in done.values())} rows there already)",
          flush=True)
    return collect(todo, out, args.max_minutes, dev_limit=QUICK["dev"] if args.quick else None)


def collect(todo: list[Any], out: Path, max_minutes: float | None, *, dev_limit: int | None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    started = time.monotonic()
    finished = rows_written = 0
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[rate]}"), console=console, disable=not console.is_terminal)
    with progress:
        bar = progress.add_task("blackbox", total=len(todo), rate="")
        for run, recipe, rungs, counter, space, have in todo:
            if max_minutes is not None and time.monotonic() - started > max_minutes * 60:
                print(f"stopping after {max_minutes:g} minutes, as asked", flush=True)
                break
            progress.update(bar, description=f"{run.space}/{run.task} {run.config_id} seed {run.seed}")
            t0 = time.monotonic()
            rows = [r for r in train_run(run, recipe, rungs, counter=counter, space=space, dev_limit=dev_limit)
                    if r["fidelity"] not in have or r["status"] == "failed"]
            append_rows(out, rows)
            finished += 1
            rows_written += len(rows)
            elapsed = time.monotonic() - started
            per_hour = finished / elapsed * 3600
            eta_h = (len(todo) - finished) / per_hour if per_hour else float("nan")
            rate = f"{per_hour:.0f} configs/h, ETA {eta_h:.1f} h"
            progress.update(bar, advance=1, rate=rate)
            last = rows[-1] if rows else {}
            line = (f"[{finished}/{len(todo)}] {run.space}/{run.task} {run.config_id} seed {run.seed}: "
                    f"{last.get('status', '-')} score {last.get('score', '-')} params {last.get('trainable_params')} "
                    f"train {last.get('train_seconds', '-')} s, run {time.monotonic() - t0:.0f} s; {rate}")
            if console.is_terminal:
                progress.console.print(line)
            else:
                print(line, flush=True)
    print(f"wrote {rows_written} rows of {finished} runs in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
