"""`autopeft pareto`, `autopeft export`, `autopeft train`: a study's front, one trial out, and trained for real."""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from autopeft.cli.app import Device, Storage, Threads, app, console, err_console, open_store, training_progress
from autopeft.store import DEFAULT_URL

if TYPE_CHECKING:
    from autopeft.engine.front import Front, FrontEntry



class Format(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"


# -- pareto --------------------------------------------------------------------------------------------

#: The columns of `pareto --format csv` (and the keys of each `--format json` object). `origin`: the seed a
#: trial was (`default: NAME` of the space's defaults, `warm start: OTHER #7`), empty for the search's own.
CSV_FIELDS = ["trial", "on_front", "score", "trainable_params", "share_pct", "train_seconds", "peak_memory_mb",
              "learning_rate", "plan", "origin"]


def front_rows(front: Front, *, everything: bool = False,
               origins: Mapping[Any, str] | None = None) -> list[dict[str, Any]]:
    """One flat row per trial: the front (best score first), or every full-fidelity trial with `on_front`;
    ``origins`` (`engine.warm_start.seed_origins`) says which were seeds, to compare the search with them."""
    from autopeft.engine.warm_start import trial_origin
    from autopeft.export.select import score, share_pct
    from autopeft.space.plan_text import plan_text

    on_front = {e.number for e in front.entries}
    entries = sorted(front.completed, key=lambda e: (-score(e), e.number)) if everything else list(front.entries)
    rows = []
    for entry in entries:
        config: dict[str, Any] = dict(entry.plan or {})
        params = entry.objectives.get("trainable_params", entry.metrics.get("trainable_params"))
        rows.append({
            "trial": entry.number,
            "on_front": entry.number in on_front,
            "score": score(entry),
            "trainable_params": None if params is None else int(params),
            "share_pct": share_pct(entry, front),
            "train_seconds": entry.objectives.get("train_seconds", entry.metrics.get("train_seconds")),
            "peak_memory_mb": entry.objectives.get("peak_memory_mb", entry.metrics.get("peak_memory_mb")),
            "learning_rate": config.get("learning_rate"),
            "plan": plan_text(config.get("plan")) if "plan" in config else "-",
            "origin": trial_origin(origins or {}, entry.config),
        })
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(study: str, front: Front, rows: list[dict[str, Any]], everything: bool) -> Table:
    volume = "n/a" if front.hypervolume is None else f"{front.hypervolume:.6g}"
    caption = (f"hypervolume {volume}; {len(front.entries)} on the front of {len(front.completed)} trials "
               "at full fidelity")
    table = Table(title=f"study {study}: " + ("full-fidelity trials" if everything else "Pareto front"),
                  caption=caption)
    if everything:
        table.add_column("front", justify="center")
    seeded = any(row["origin"] for row in rows)  # the column only where a seed is shown: narrower otherwise
    for name, justify in (("trial", "right"), ("score", "right"), ("params", "right"), ("share", "right"),
                          ("train s", "right"), ("plan", "left"), ("lr", "right"), *([("origin", "left")] * seeded)):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        cells = [str(row["trial"]), _fmt(row["score"], ".4f"), _fmt(row["trainable_params"], ","),
                 _fmt(row["share_pct"], ".3f") + ("%" if row["share_pct"] is not None else ""),
                 _fmt(row["train_seconds"], ".1f"), row["plan"], _fmt(row["learning_rate"], ".2g"),
                 *([row["origin"] or ""] * seeded)]
        table.add_row(*(["*" if row["on_front"] else ""] if everything else []), *cells)
    return table


@app.command("pareto")
def pareto(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: Storage = DEFAULT_URL,
    fmt: Annotated[Format, typer.Option("--format", help="table, or json / csv for machines.")] = Format.table,
    everything: Annotated[bool, typer.Option("--all", help="Every full-fidelity trial, front marked.")] = False,
) -> None:
    """Show a study's Pareto front: score against trainable parameters, best score first; a trial that was one
    of the seeds the study proposed first (the space's defaults, a warm start's front) says which."""
    from autopeft.engine.definition import StudyDefinition
    from autopeft.engine.front import empty_front_reason, study_front
    from autopeft.engine.warm_start import seed_origins

    store = open_store(storage)
    front = study_front(store, name)
    origins = seed_origins(StudyDefinition.from_record(store.get_study(name)))
    rows = front_rows(front, everything=everything, origins=origins)
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
    elif fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
    elif not rows:
        console.print(f"study {name}: {empty_front_reason(front)}, so the front is empty")
    else:
        console.print(_table(name, front, rows, everything))
    if not rows and fmt is not Format.table:
        err_console.print(f"study {name}: {empty_front_reason(front)}")


# -- export --------------------------------------------------------------------------------------------


@app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="Study name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for autopeft.yaml and peft/.")],
    storage: Storage = DEFAULT_URL,
    trial: Annotated[int | None, typer.Option("--trial", help="This trial (any completed at full fidelity).")] = None,
    max_params_pct: Annotated[float | None, typer.Option(
        "--max-params-pct", help="Best score with trainable share <= this % of the model.")] = None,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Fewest trainable parameters with score >= this.")] = None,
    peft_only: Annotated[bool, typer.Option(
        "--peft-only", help="Only trials Hugging Face peft can load (with the rules above: among them).")] = False,
) -> None:
    """Write a trial's configuration (default: the best score) as autopeft.yaml, and in peft format."""
    from autopeft.errors import ConfigError
    from autopeft.export.select import Rule
    from autopeft.export.study_export import export_trial

    given = [flag for flag, value in (("--trial", trial), ("--max-params-pct", max_params_pct),
                                      ("--min-score", min_score)) if value is not None]
    if len(given) > 1:
        raise ConfigError(f"give at most one of --trial, --max-params-pct, --min-score (got {', '.join(given)})")
    rule = Rule(trial=trial, max_params_pct=max_params_pct, min_score=min_score, peft_only=peft_only)
    _print_export(export_trial(open_store(storage), name, out, rule))


def _print_export(report: Any) -> None:
    entry: FrontEntry = report.entry
    objectives = ", ".join(f"{k} {v:,.0f}" if k == "trainable_params" else f"{k} {v:.4g}"
                           for k, v in entry.objectives.items())
    console.print(f"trial {entry.number} ({objectives}) -> {report.bundle_path}", highlight=False)
    peft = report.peft
    if report.peft_dir is not None:
        what = "adapter config and trained weights" if report.weights else "adapter config"
        console.print(f"peft {what} -> {report.peft_dir}", highlight=False)
        for note in peft.notes:
            console.print(f"  note: {note}", highlight=False)
    elif peft is not None:
        console.print("peft cannot express this plan, so no peft/ was written:", highlight=False)
        for reason in peft.unsupported:
            console.print(f"  - {reason}", highlight=False)
    for note in report.notes:
        console.print(note, highlight=False)
    console.print(f"train it: autopeft train {report.bundle_path}", highlight=False)


# -- train ---------------------------------------------------------------------------------------------


@app.command("train")
def train(
    bundle_path: Annotated[Path, typer.Argument(metavar="AUTOPEFT_YAML", help="An exported autopeft.yaml.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: trained/ beside it).")] = None,
    fidelity: Annotated[int | None, typer.Option(help="Train to this fidelity (default: the recipe's max).")] = None,
    threads: Threads = None,
    device: Device = None,
) -> None:
    """Train an exported configuration at full fidelity; write metrics.json and the adapter."""
    from dataclasses import replace

    from autopeft.export.bundle import read_bundle
    from autopeft.export.final import METRICS_FILE, default_out_dir, train_bundle
    from autopeft.export.staging import check_target
    from autopeft.train.resources import check_device, check_threads, default_threads, with_resources

    threads, device = check_threads(threads), check_device(device)
    bundle = read_bundle(bundle_path)
    bundle = replace(bundle, recipe=with_resources(bundle.recipe, threads=threads, device=device,
                                                   default=default_threads()))
    target = out if out is not None else default_out_dir(bundle_path)
    check_target(target, marker=METRICS_FILE)  # now, not after minutes of training
    with training_progress() as progress:
        run = train_bundle(bundle, target, fidelity=fidelity, progress=progress)
    m = run.metrics
    dev = "-" if m["dev_score"] is None else f"{m['dev_score']:.4f}"
    console.print(f"{m['metric']}: dev {dev}, validation {_fmt(m['validation_score'], '.4f')}; "
                  f"{m['trainable_params']:,} trainable params ({100 * m['trainable_share']:.3f}%), "
                  f"{m['train_seconds']:.1f} s", highlight=False)
    console.print(f"metrics -> {run.out_dir / 'metrics.json'}", highlight=False)
    console.print(f"adapter ({run.adapter_format} format) -> {run.adapter_path}", highlight=False)
    for reason in run.unsupported:
        console.print(f"  not peft: {reason}", highlight=False)
