"""`autopeft trial run`: train one configuration to a fidelity and print its score and costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from autopeft.cli.app import app, console, progress_bar

if TYPE_CHECKING:
    from autopeft.train.result import TrialResult

trial_app = typer.Typer(no_args_is_help=True, help="Train and evaluate one configuration.")
app.add_typer(trial_app, name="trial")


@trial_app.command("run")
def trial_run(
    trial: Annotated[Path, typer.Option("--trial", help="Trial recipe YAML (model, task, fidelity).")],
    config: Annotated[Path, typer.Option("--config", help="Configuration YAML (plan, learning rate).")],
    fidelity: Annotated[int | None, typer.Option(help="Train to this fidelity (default: the recipe's max).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    trial_dir: Annotated[Path | None, typer.Option(help="Save state here; continue from it if present.")] = None,
    dev: Annotated[bool, typer.Option("--dev/--no-dev", help="Also score the held-back dev split.")] = False,
) -> None:
    """Train one configuration to a fidelity and print its score and costs."""
    from autopeft.train.job import TrialJob
    from autopeft.train.recipe import load_config, load_recipe

    job = TrialJob(load_recipe(trial), load_config(config), trial_dir=trial_dir, config_source=str(config))
    with progress_bar(not as_json) as progress:
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
                "peak_memory_mb"):
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
