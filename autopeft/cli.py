"""The `autopeft` command line: a thin Typer layer over the Python API.

Every `AutopeftError` becomes one line on stderr and exit code 2, here and nowhere else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from autopeft.errors import AutopeftError

if TYPE_CHECKING:
    from autopeft.train.result import TrialResult

err_console = Console(stderr=True)
console = Console()


class _OneLineErrors(TyperGroup):
    """Root group: any `AutopeftError` from any command becomes one stderr line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AutopeftError as err:
            err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_OneLineErrors, no_args_is_help=True, add_completion=False,
                  help="Search PEFT configurations.")
trial_app = typer.Typer(no_args_is_help=True, help="Train and evaluate one configuration.")
app.add_typer(trial_app, name="trial")


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs.")] = False) -> None:
    """autopeft: which adapter, where, how large."""
    from autopeft.train.model import quiet_transformers

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    quiet_transformers(verbose)


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
    with _progress(not as_json) as progress:
        result = job.run(fidelity, evaluate_dev=dev, progress=progress)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(_result_table(result))
    if result.status.value == "failed":
        raise typer.Exit(1)


def _progress(enabled: bool) -> Any:
    from contextlib import nullcontext

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)


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


def main() -> None:
    """Console-script entry point."""
    app()
