"""The root Typer application, its consoles, and the one-line error rule every command shares.

Every `AutopeftError` becomes one line on stderr and exit code 2, here and nowhere else. Commands
live in one module per group (`trial`, `space`, `study`, `results`) and register themselves on `app`.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from autopeft.errors import AutopeftError
from autopeft.train.verbosity import VERBOSE_ENV

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


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library logs.")] = False) -> None:
    """autopeft: which adapter, where, how large."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    # Read where models load (also in worker processes, which inherit the environment), so that
    # commands that never load a model do not import transformers here.
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"


def progress_bar(enabled: bool) -> AbstractContextManager[Any]:
    """A transient rich progress bar on stderr, or a null context when output is machine-readable."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True)
