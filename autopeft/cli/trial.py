"""`autopeft trial run | show`: train one configuration to a fidelity, or show one trial of a study."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from autopeft.cli.app import Device, Storage, Threads, app, console, open_store, training_progress
from autopeft.cli.study import cell_text, json_default
from autopeft.store import DEFAULT_URL, NotFoundError

if TYPE_CHECKING:
    from autopeft.dashboard.views import StudyView, TrialView
    from autopeft.train.result import TrialResult

trial_app = typer.Typer(no_args_is_help=True, help="Train one configuration, or show a trial of a study.")
app.add_typer(trial_app, name="trial")


@trial_app.command("run")
def trial_run(
    trial: Annotated[Path, typer.Option("--trial", help="Trial recipe YAML (model, task, fidelity).")],
    config: Annotated[Path, typer.Option("--config", help="Configuration YAML (plan, learning rate).")],
    fidelity: Annotated[int | None, typer.Option(help="Train to this fidelity (default: the recipe's max).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    trial_dir: Annotated[str | None, typer.Option(help="Save state here, a folder or a URI (s3://, gs://, "
                                                  "file://); continue from it if present.")] = None,
    dev: Annotated[bool, typer.Option("--dev/--no-dev", help="Also score the held-back dev split.")] = False,
    threads: Threads = None,
    device: Device = None,
) -> None:
    """Train one configuration to a fidelity and print its score and costs."""
    from autopeft.train.job import TrialJob
    from autopeft.train.recipe import load_config, load_recipe
    from autopeft.train.resources import check_device, check_threads, default_threads, with_resources
    from autopeft.train.storage import check_location, open_trial

    threads, device = check_threads(threads), check_device(device)
    folder = None if trial_dir is None else open_trial(check_location(trial_dir, field="trial_dir"))
    recipe = with_resources(load_recipe(trial), threads=threads, device=device, default=default_threads())
    job = TrialJob(recipe, load_config(config), trial_dir=None if folder is None else folder.local,
                   config_source=str(config), on_save=None if folder is None else folder.push)
    # A URI's stored state comes into a local copy first (nothing to do for a folder).
    with (folder.checked_out() if folder is not None else contextlib.nullcontext(),
          training_progress(not as_json) as progress):
        result = job.run(fidelity, evaluate_dev=dev, progress=progress)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(_result_table(result))
    if result.status.value == "failed":
        raise typer.Exit(1)


def _result_table(result: TrialResult) -> Table:
    data = json.loads(result.model_dump_json())
    table = Table(title="trial result", show_header=False)
    for key in ("status", "error", "score", "metrics", "dev_metrics", "fidelity", "fidelity_unit", "steps",
                "train_loss", "trainable_params", "trainable_share", "train_seconds", "examples_per_second",
                "peak_memory_mb", "threads", "device"):
        value = data.get(key)
        if value is None:
            continue
        if key == "trainable_share":
            value = f"{100 * value:.3f}%"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4f}" for k, v in value.items())
        table.add_row(key, str(value))
    return table


@trial_app.command("show")
def trial_show(
    study: Annotated[str, typer.Argument(help="Study name.")],
    number: Annotated[int, typer.Argument(help="Trial number (as `study show` and `pareto` list them).")],
    storage: Storage = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One trial of a study: configuration, plan, every result per fidelity, status, error, jobs and times."""
    from autopeft.dashboard.data import load_study

    view = load_study(open_store(storage), study)  # one transaction, as the dashboard's trial page reads it
    trial = view.trial(number)
    if trial is None:
        span = f"trials 0-{view.trials[-1].number}" if view.trials else "no trials yet"
        raise NotFoundError(f"study {study!r} has no trial {number} ({span})")
    if as_json:
        typer.echo(json.dumps(trial_details(view, trial), indent=2, default=json_default))
        return
    for table in _trial_tables(view, trial):
        console.print(table)


def trial_details(view: StudyView, trial: TrialView) -> dict[str, Any]:
    """What `trial show --json` prints: the trial as stored, its results with objectives and metrics apart,
    its jobs (attempts), and its origin: the seed it was (a space default, a warm start's), else None."""
    from autopeft.dashboard.rows import attempt_rows, plan_line
    from autopeft.engine.warm_start import seed_origins, trial_origin

    origin = trial_origin(seed_origins(view.definition), trial.config)
    return {"study": view.name, "number": trial.number, "status": trial.status.value, "on_front": trial.on_front,
            "origin": origin, "fidelity": trial.fidelity, "max_fidelity": view.max_fidelity,
            "unit": view.definition.recipe["fidelity"].get("unit", "steps"), "bracket": trial.bracket,
            "worker": trial.worker, "error": trial.error, "created": trial.created_at, "started": trial.started_at,
            "finished": trial.finished_at, "seconds": _seconds(trial.started_at, trial.finished_at),
            "config": trial.config, "plan_text": plan_line(trial.plan), "plan": trial.plan,
            "results": [{"fidelity": r.fidelity, "objectives": r.objectives, "metrics": r.metrics,
                         "created": r.created_at} for r in view.results if r.trial_number == trial.number],
            "attempts": attempt_rows(view, trial.number)}


def _trial_tables(view: StudyView, trial: TrialView) -> list[Table]:
    """The trial's summary, its configuration, its results (a column per fidelity) and its jobs."""
    from autopeft.dashboard.rows import attempt_rows, plan_line, result_rows

    details = trial_details(view, trial)
    summary = Table(title=f"trial {trial.number} of {view.name}", show_header=False, title_justify="left")
    reached = "-" if trial.fidelity is None else f"{trial.fidelity:,}"
    summary.add_row("status", trial.status.value + (" (on the front)" if trial.on_front else ""))
    summary.add_row("fidelity", f"{reached} of {view.max_fidelity:,} {details['unit']}")
    if details["origin"] is not None:
        summary.add_row("origin", f"{details['origin']} (proposed first, before the search's own)")
    for key in ("bracket", "worker", "created", "started", "finished", "seconds", "error"):
        if details[key] is not None:
            summary.add_row(key, cell_text(details[key]))
    summary.add_row("plan", plan_line(trial.plan) or "-")
    config = Table(title="configuration", show_header=False, title_justify="left")
    for key, value in trial.config.items():
        config.add_row(str(key), cell_text(value))
    tables = [summary, config]
    results = result_rows(view, trial.number)
    if results:
        tables.append(_columns_table("results per fidelity", results, "fidelity"))
    jobs = attempt_rows(view, trial.number)
    if jobs:
        tables.append(_jobs_table(jobs))
    return tables


def _columns_table(title: str, rows: list[dict[str, Any]], header: str) -> Table:
    """Rows as columns (a fidelity each), keys down the side: many measures over a few fidelities fit."""
    table = Table(title=title, title_justify="left")
    table.add_column(header)
    for row in rows:
        table.add_column(cell_text(row[header]), justify="right")
    keys = list(dict.fromkeys(k for row in rows for k in row if k != header))
    for key in keys:
        table.add_row(key, *(cell_text(row.get(key)) for row in rows))
    return table


#: The jobs table's columns (`attempt_rows` keys) and headers: narrow enough for 80 columns.
JOB_COLUMNS = {"attempt": "job", "fidelity": "to", "resume_from": "from", "worker": "worker", "outcome": "outcome",
               "started": "started", "seconds": "seconds", "error": "error"}


def _jobs_table(rows: list[dict[str, Any]]) -> Table:
    """The trial's jobs: the day is in the summary above, so a start shows as its time of day."""
    table = Table(title="jobs", title_justify="left")
    for key, header in JOB_COLUMNS.items():
        numeric = key in ("attempt", "fidelity", "resume_from", "seconds")
        table.add_column(header, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(f"{row[k]:%H:%M:%S}" if k == "started" else cell_text(row[k]) for k in JOB_COLUMNS))
    return table


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()
