"""`autopeft study run | resume | list | show | delete`: launch studies and look after them."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from autopeft.cli.app import (
    INTERRUPTED,
    Device,
    Storage,
    Threads,
    app,
    console,
    err_console,
    open_store,
    storage_option,
)
from autopeft.engine.strategy import DEFAULT_STRATEGY, STRATEGIES
from autopeft.errors import ConfigError
from autopeft.status import TrialStatus
from autopeft.store import DEFAULT_URL, display_url

if TYPE_CHECKING:
    from autopeft.dashboard.views import StudyView
    from autopeft.engine.checks import CheckedStudy
    from autopeft.engine.lease import FaultPolicy
    from autopeft.engine.loop import StudySummary
    from autopeft.store import Store

study_app = typer.Typer(no_args_is_help=True, help="Run, resume and manage studies.")
app.add_typer(study_app, name="study")

BudgetOpt = Annotated[float | None, typer.Option("--budget", help="Training budget in full-fidelity trials.")]
MaxTime = Annotated[str | None, typer.Option("--max-time", help="Wall-time limit: 90s, 30m, 2h (or seconds).")]
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="Trials run in parallel (default 1; with "
                                            "--executor ray, what the cluster holds).")]
MaxRetries = Annotated[int, typer.Option("--max-retries", min=0, help="Runs of a trial again after its worker "
                                        "died or went silent, from its checkpoint.")]
TrialTimeout = Annotated[str | None, typer.Option("--trial-timeout", help="Fail a trial whose job runs longer: "
                                                  "90s, 30m, 2h (default: no limit).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display; print the front at the end.")]
Executor = Annotated[str, typer.Option("--executor", help="local (process pool), ray (a Ray cluster) or inprocess "
                                      "(debugging).")]
RayAddress = Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="With --executor ray: "
                                                "auto, HOST:PORT of the head, or ray://HOST:10001 (default: "
                                                "RAY_ADDRESS, else a new Ray on this machine).")]
GpusPerTrial = Annotated[float | None, typer.Option("--gpus-per-trial", help="With --executor ray: GPUs per trial; "
                                                    "0.5 shares one between two (default 1 where the cluster has "
                                                    "GPUs, else 0).")]
CpusPerTrial = Annotated[float | None, typer.Option("--cpus-per-trial", help="With --executor ray: CPUs per trial "
                                                    "(default 1).")]
Devices = Annotated[str | None, typer.Option("--devices", help="With the local pool: the GPUs its trials share, "
                                            "one each, least busy first: 0,1,2,3 or cuda:0,cuda:1 (default: "
                                            "every GPU torch sees, where it sees several).")]
RunsDir = Annotated[str | None, typer.Option("--runs-dir", help="Trial checkpoints: a folder every worker sees, "
                                             "or a URI such as s3://bucket/runs (with s3fs) or gs:// (with "
                                             "gcsfs) (default: autopeft_runs/ beside the SQLite file).")]


def parse_duration(text: str | None, field: str = "max-time") -> float | None:
    """`90`, `90s`, `30m`, `2h` -> seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{text!r} is not a duration; accepted: a positive number with s, m or h", field=field)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _policy(max_retries: int, trial_timeout: str | None, executor: str) -> FaultPolicy:
    from autopeft.engine.lease import FaultPolicy

    timeout = parse_duration(trial_timeout, field="trial-timeout")
    if timeout is not None and executor == "inprocess":
        raise ConfigError("the in-process executor cannot stop a trial; use --executor local", field="trial-timeout")
    return FaultPolicy(max_retries=max_retries, trial_timeout=timeout)


def _display(quiet: bool) -> Any:
    from autopeft.engine.progress import LineDisplay, LiveDisplay, NullDisplay

    if quiet:
        return NullDisplay()
    return LiveDisplay(err_console) if err_console.is_terminal else LineDisplay(err_console)


def _print_summary(summary: StudySummary, storage: str) -> None:
    from autopeft.engine.progress import front_table

    console.print(front_table(summary.front, limit=None, title=f"Pareto front of {summary.name}"))
    c = summary.counts
    console.print(f"study {summary.name}: {summary.status.value} · {c['complete']} complete, {c['pruned']} pruned, "
                  f"{c['failed']} failed · budget used {summary.budget_used:.2f} full trials · "
                  f"{summary.seconds:.0f} s")
    option, note = storage_option(storage)
    if summary.status.value == "paused":
        console.print(f"resume with: autopeft study resume {summary.name}{option}", highlight=False)
    elif summary.front.entries:
        console.print(f"next: autopeft export {summary.name} --out exported/{option}", highlight=False)
    elif summary.front.completed:  # every full-fidelity trial at chance: look at them before exporting one
        console.print(f"next: autopeft pareto {summary.name} --all{option}", highlight=False)
    else:
        return
    if note:
        console.print(note, highlight=False)


@study_app.command("run")
def study_run(
    space: Annotated[Path, typer.Option("--space", help="Search space YAML (search_spaces/*.yaml).")],
    trial: Annotated[Path, typer.Option("--trial", help="Trial recipe YAML (trials/*.yaml).")],
    name: Annotated[str | None, typer.Option("--name", help="Study name (default: recipe-space-time); no "
                                             "slashes or '::'.")] = None,
    storage: Storage = DEFAULT_URL,
    strategy: Annotated[str, typer.Option("--strategy", help=f"One of: {', '.join(STRATEGIES)}.")] = DEFAULT_STRATEGY,
    budget: BudgetOpt = 10.0,
    max_time: MaxTime = None,
    workers: Workers = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the sampler and the scheduler.")] = 0,
    objectives: Annotated[str, typer.Option("--objectives", help="Comma-separated: score, trainable_params, "
                                            "train_seconds, peak_memory_mb.")] = "score,trainable_params",
    eta: Annotated[float, typer.Option("--eta", help="Hyperband reduction factor.")] = 3.0,
    executor: Executor = "local",
    runs_dir: RunsDir = None,
    max_retries: MaxRetries = 2,
    trial_timeout: TrialTimeout = None,
    quiet: Quiet = False,
    threads: Threads = None,
    device: Device = None,
    devices: Devices = None,
    ray_address: RayAddress = None,
    gpus_per_trial: GpusPerTrial = None,
    cpus_per_trial: CpusPerTrial = None,
    no_defaults: Annotated[bool, typer.Option("--no-defaults", help="Do not propose the space's defaults "
                                              "first.")] = False,
    warm_start: Annotated[str | None, typer.Option("--warm-start", metavar="STUDY", help="Propose this study's "
                                                   "Pareto front first (same store, same space; another task or "
                                                   "model).")] = None,
) -> None:
    """Create a study and run it until the budget is spent, showing the front as it grows."""
    from autopeft.engine.checks import check_ray_cluster, check_run_options, check_storage, check_study
    from autopeft.engine.study import create_study, run_study
    from autopeft.engine.warm_start import with_warm_start
    from autopeft.store import Lease, Store
    from autopeft.train.resources import check_device, check_threads

    for path, field in ((space, "--space"), (trial, "--trial")):
        if not path.is_file():
            raise ConfigError(f"no such file: {path}", field=field)
    names = tuple(n.strip() for n in objectives.split(",") if n.strip())
    # Every input is checked before the store is opened: a bad one writes no row, no file, no folder.
    run = check_run_options(budget=budget, max_time=parse_duration(max_time), workers=workers, executor=executor,
                            runs_dir=runs_dir, ray_address=ray_address, gpus_per_trial=gpus_per_trial,
                            cpus_per_trial=cpus_per_trial, device=device, devices=devices)
    policy = _policy(max_retries, trial_timeout, executor)
    threads, device = check_threads(threads), check_device(device)
    check_storage(storage)
    checked = check_study(space, trial, name=name, strategy=strategy, seed=seed, objectives=names, eta=eta,
                          budget=budget, defaults=not no_defaults)
    if warm_start is not None:  # the other study is in this store, which must then exist
        checked = with_warm_start(_warm_start_store(storage), warm_start, checked)
    shown = check_ray_cluster(run, storage) if run.executor == "ray" else run.workers
    store = Store(storage)
    lease = Lease.for_this_process()
    study_name, _ = create_study(store, checked, lease=lease)
    err_console.print(f"study {study_name}: {strategy}, budget {budget:g} full trials, {shown} worker(s), "
                      f"store {display_url(storage)}", highlight=False)
    _print_plan(checked)
    _print_dashboard_hint(study_name, storage)
    with _sigterm_pauses():
        summary = run_study(store, study_name, budget=run.budget, workers=run.workers, executor=run.executor,
                            runs_dir=run.runs_dir, display=_display(quiet), policy=policy, lease=lease,
                            threads=threads, device=device, executor_options=run.executor_options,
                            devices=run.devices)
    _print_summary(summary, storage)
    _exit_if_interrupted(summary)


def _warm_start_store(storage: str) -> Store:
    """The store that holds the study `--warm-start` names: a missing one is that option's error."""
    from autopeft.engine.warm_start import OPTION
    from autopeft.store import StoreError

    try:
        return open_store(storage)
    except StoreError as err:
        raise ConfigError(str(err), field=OPTION) from None


def _print_plan(checked: CheckedStudy) -> None:
    """The rung ladder, how long proposals stay random (with a warning where the budget falls short) and the
    seeds proposed first."""
    from autopeft.engine.announce import proposed_seeds, recipe_plan, seeds_line

    seeds = len(proposed_seeds(checked.seeds, checked.counter.feasible))
    plan = recipe_plan(checked.recipe, checked.strategy, eta=checked.eta, budget=checked.budget, seeds=seeds)
    lines = plan.lines()
    first = seeds_line(checked.seeds, checked.counter.feasible)
    lines[2:2] = [first] if first else []  # after the ladder and the proposals, before any warning
    for line in lines:
        warning = line.startswith("warning")
        err_console.print(line, markup=False, highlight=False, soft_wrap=True, style="yellow" if warning else "")


def _print_dashboard_hint(name: str, storage: str) -> None:
    """The command that opens this study in the dashboard (a password-bearing URL goes by the environment)."""
    option, note = storage_option(storage)
    err_console.print(f"watch it: autopeft dashboard --study {name}{option}", highlight=False, soft_wrap=True)
    if note:
        err_console.print(note, highlight=False, soft_wrap=True)


@study_app.command("resume")
def study_resume(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: Storage = DEFAULT_URL,
    budget: Annotated[float | None, typer.Option("--budget", help="Total budget of the study in full-fidelity "
                                                 "trials (default: the one it was created with).")] = None,
    max_time: MaxTime = None,
    workers: Workers = None,
    executor: Executor = "local",
    runs_dir: RunsDir = None,
    max_retries: MaxRetries = 2,
    trial_timeout: TrialTimeout = None,
    force: Annotated[bool, typer.Option("--force", help="Take the study over even while another driver's "
                                        "heartbeat is fresh (a crashed driver's study is taken over without "
                                        "it).")] = False,
    quiet: Quiet = False,
    threads: Threads = None,
    device: Device = None,
    devices: Devices = None,
    ray_address: RayAddress = None,
    gpus_per_trial: GpusPerTrial = None,
    cpus_per_trial: CpusPerTrial = None,
) -> None:
    """Continue a paused or crashed study from the store; interrupted trials continue from their checkpoints."""
    from autopeft.engine.checks import check_ray_cluster, check_run_options
    from autopeft.engine.study import run_study
    from autopeft.train.resources import check_device, check_threads

    run = check_run_options(budget=budget, max_time=parse_duration(max_time), workers=workers, executor=executor,
                            runs_dir=runs_dir, require_budget=False, ray_address=ray_address,
                            gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, device=device,
                            devices=devices)
    policy = _policy(max_retries, trial_timeout, executor)
    threads, device = check_threads(threads), check_device(device)
    store = open_store(storage)
    _require(store, name)
    if run.executor == "ray":
        check_ray_cluster(run, storage)
    with _sigterm_pauses():
        summary = run_study(store, name, budget=run.budget, workers=run.workers, executor=run.executor,
                            runs_dir=run.runs_dir, display=_display(quiet), resume=True, force=force, policy=policy,
                            threads=threads, device=device, executor_options=run.executor_options,
                            devices=run.devices)
    _print_summary(summary, storage)
    _exit_if_interrupted(summary)


@contextmanager
def _sigterm_pauses() -> Iterator[None]:
    """SIGTERM pauses the study as Ctrl-C does: it is how Slurm (`scancel`), Kubernetes and systemd stop a
    job, so a study stopped that way resumes as a paused one, not as a crashed driver's."""
    def pause(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, pause)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_if_interrupted(summary: StudySummary) -> None:
    """Ctrl-C (or SIGTERM) paused the study (its summary and the resume command are printed): exit 130."""
    if summary.status.value == "paused":
        raise typer.Exit(INTERRUPTED)


@study_app.command("list")
def study_list(
    storage: Storage = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every study in the store, with its status, trial counts and best score."""

    store = open_store(storage)
    rows = [_overview(store, record.name) for record in store.list_studies()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"no studies in {display_url(storage)}")
        return
    table = Table(title=f"studies in {display_url(storage)}", title_justify="left")
    for column in ("name", "strategy", "status", "trials", "complete", "failed", "best score", "front", "created"):
        table.add_column(column, justify="right" if column in ("trials", "complete", "failed", "front") else "left")
    for r in rows:
        best = "" if r["best_score"] is None else f"{r['best_score']:.4f}"
        table.add_row(r["name"], r["strategy"], r["status"], str(r["trials"]), str(r["complete"]), str(r["failed"]),
                      best, str(r["front_size"]), r["created"][:16].replace("T", " "))
    console.print(table)


def _overview(store: Store, name: str) -> dict[str, Any]:
    from autopeft.engine.front import study_front

    record = store.get_study(name)
    counts = store.trial_counts(name)
    front = study_front(store, name)
    return {"name": name, "strategy": record.strategy, "status": record.status.value,
            "trials": sum(counts.values()), "complete": _count(counts, "complete"), "failed": _count(counts, "failed"),
            "best_score": max((e.objectives["score"] for e in front.completed), default=None),
            "front_size": len(front.entries), "hypervolume": front.hypervolume,
            "created": record.created_at.isoformat(), "updated": record.updated_at.isoformat()}


def _attempt_counts(store: Store, name: str) -> dict[str, int]:
    """How the study's jobs ended (reported, lost, timeout, ...): retries show up here."""
    from autopeft.status import AttemptOutcome

    counts = {outcome.value: 0 for outcome in AttemptOutcome}
    for attempt in store.attempts(name):
        counts[attempt.outcome.value] += 1
    return counts


def _count(counts: dict[Any, int], status: str) -> int:
    return sum(n for s, n in counts.items() if s.value == status)


def _require(store: Store, name: str) -> None:
    from autopeft.store import NotFoundError

    names = [s.name for s in store.list_studies()]
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise NotFoundError(f"no study {name!r} in {store}; studies: {known}")


StatusFilter = Annotated[list[str] | None, typer.Option(
    "--status", help="Only trials in this status (repeat, or separate by commas): "
    f"{', '.join(s.value for s in TrialStatus)}.")]
#: Trials the default (compact) table of `study show` lists: the latest; `--trials` lists them all.
COMPACT_TRIALS = 20
FORMATS = ("table", "json", "csv")


@study_app.command("show")
def study_show(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: Storage = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (as --format json).")] = False,
    output_format: Annotated[str, typer.Option("--format", help="table, json (the study and its trials) or csv "
                                               "(its trials).")] = "table",
    status: StatusFilter = None,
    every: Annotated[bool, typer.Option("--trials", help="List every trial, with its worker, times and error "
                                        f"(default: the latest {COMPACT_TRIALS}, compact).")] = False,
) -> None:
    """A study's definition, progress, current front and trials."""
    from autopeft.dashboard.data import load_study
    from autopeft.dashboard.rows import trial_columns, trial_rows
    from autopeft.engine.progress import front_table

    fmt = "json" if as_json else output_format
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; accepted: {', '.join(FORMATS)}", field="format")
    wanted = parse_statuses(status)
    store = open_store(storage)
    _require(store, name)
    view = load_study(store, name, detail=False)  # the trials as the dashboard's table has them, in one read
    rows = _with_origins(view, trial_rows(view, wanted))
    if fmt == "csv":
        typer.echo(csv_text(trial_columns(view), rows), nl=False)
        return
    details = _details(store, name)
    if fmt == "json":
        typer.echo(json.dumps({**details, "trials": rows}, indent=2, default=json_default))
        return
    console.print(_details_table(name, details))
    console.print(front_table(view.front, limit=None))
    console.print(_trials_table(view, rows, every=every, filtered=wanted is not None))


def _with_origins(view: StudyView, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with `origin`: the seed its trial was (a space default, a warm start's), None for the search's."""
    from autopeft.engine.warm_start import seed_origins, trial_origin

    origins = seed_origins(view.definition)
    configs = {t.number: t.config for t in view.trials}
    return [{**row, "origin": trial_origin(origins, configs[row["number"]])} for row in rows]


def parse_statuses(values: list[str] | None) -> set[TrialStatus] | None:
    """`--status pruned --status failed` or `--status pruned,failed` -> those statuses (None: no filter)."""
    if not values:
        return None
    wanted = set()
    for value in (v.strip() for text in values for v in text.split(",")):
        try:
            wanted.add(TrialStatus(value))
        except ValueError:
            accepted = ", ".join(s.value for s in TrialStatus)
            raise ConfigError(f"{value!r} is not a trial status; accepted: {accepted}", field="status") from None
    return wanted


def _details(store: Store, name: str) -> dict[str, Any]:
    """The study's definition and progress: what `study show --json` prints besides its trials."""
    from autopeft.engine.definition import StudyDefinition
    from autopeft.engine.loop import budget_spent
    from autopeft.engine.utilisation import utilisation

    record = store.get_study(name)
    definition = StudyDefinition.from_record(record)
    overview = _overview(store, name)
    used = budget_spent(store.results(name), definition.max_fidelity)
    return {**overview, "space": definition.space_path, "recipe": definition.recipe_path, "seed": record.seed,
            "objectives": definition.objectives_json(), "options": dict(definition.options),
            "budget_used": used, "counts": {s.value: n for s, n in store.trial_counts(name).items()},
            "driver": record.lease_holder,
            "driver_heartbeat": None if record.lease_heartbeat is None else record.lease_heartbeat.isoformat(),
            "attempts": _attempt_counts(store, name), "workers": _workers(utilisation(store.attempts(name)))}


def _workers(use: Any) -> dict[str, Any]:
    """The workers' idle share while the study had work to hand out (`autopeft.engine.utilisation`)."""
    share = use.idle_share
    return {"most_at_once": use.workers, "window_seconds": round(use.window_seconds, 3),
            "idle_share": None if share is None else round(share, 4)}


def _details_table(name: str, details: dict[str, Any]) -> Table:
    table = Table(show_header=False, title=f"study {name}", title_justify="left")
    for key in ("status", "strategy", "seed", "space", "recipe", "created", "updated"):
        table.add_row(key, str(details[key]))
    table.add_row("objectives", ", ".join(f"{o['name']} ({o['direction']}, ref {o['reference']:g})"
                                          for o in details["objectives"]))
    table.add_row("trials", ", ".join(f"{n} {s}" for s, n in details["counts"].items() if n))
    budget = details["options"].get("budget")
    table.add_row("budget used", f"{details['budget_used']:.2f}" + (f" of {budget:g}" if budget else "")
                  + " full trials")
    table.add_row("driver", "none" if details["driver"] is None else
                  f"{details['driver']} (heartbeat {details['driver_heartbeat'][:19].replace('T', ' ')} UTC)")
    table.add_row("jobs", ", ".join(f"{n} {o}" for o, n in details["attempts"].items() if n) or "none")
    workers = details["workers"]
    if workers["idle_share"] is not None:
        table.add_row("workers idle", f"{100 * workers['idle_share']:.1f}% of {workers['most_at_once']} worker(s)' "
                      "time while trials remained to start")
    return table


def _trials_table(view: StudyView, rows: list[dict[str, Any]], *, every: bool, filtered: bool) -> Table:
    """The trials at the fidelity each reached: the latest few, compact, or all with workers, times, errors."""
    names = [o.name for o in view.definition.objectives]
    shown = rows if every else rows[-COMPACT_TRIALS:]
    columns = ["number", "status", "fidelity", *names, "share_pct", "plan"]
    if any(row["origin"] for row in shown):  # seeds among the trials shown: say which
        columns.append("origin")
    if every:
        columns += ["worker", "started", "finished", "error"]
    which = "trials" + (" (filtered by --status)" if filtered else "")
    caption = (f"the latest {len(shown)} of {len(rows)} {which}; --trials lists them all" if len(shown) < len(rows)
               else f"{len(rows)} {which}")
    table = Table(title="trials", caption=caption, title_justify="left")
    for column in columns:
        table.add_column({"number": "trial", "share_pct": "share"}.get(column, column),
                         justify="right" if column in ("number", "fidelity", *names, "share_pct") else "left")
    for row in shown:
        table.add_row(*(_trial_cell(column, row[column]) for column in columns))
    return table


def _trial_cell(column: str, value: Any) -> str:
    if column == "number":
        return str(value)
    if column == "share_pct" and value is not None:
        return f"{value:.3f}%"
    if column == "error" and value:
        return str(value).strip().splitlines()[0][:80]
    return "-" if value == "" else cell_text(value)


def cell_text(value: Any) -> str:
    """A value as a table shows it: times to the second, large numbers with separators, floats to 4 digits."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """Rows as CSV with a header: times in ISO 8601, missing values empty."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else json_default(v) if isinstance(v, datetime) else v
                         for k, v in row.items()})
    return out.getvalue()


def json_default(value: Any) -> str:
    """JSON (and CSV) for what json cannot write: times as ISO 8601, anything else as its text."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


@study_app.command("delete")
def study_delete(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: Storage = DEFAULT_URL,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Delete a study, its trials and results, and its trial checkpoints."""
    from autopeft.engine.paths import runs_dir_for
    from autopeft.train.storage import check_location, delete_folder, join

    runs = runs_dir_for(storage) if runs_dir is None else check_location(runs_dir, field="runs-dir")
    store = open_store(storage)
    _require(store, name)
    if not yes and not typer.confirm(f"delete study {name!r} and its trials?", err=True):
        raise typer.Exit(1)
    store.delete_study(name)
    delete_folder(join(runs, name))
    console.print(f"deleted study {name}")
