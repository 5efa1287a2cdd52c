"""The root Typer application, its consoles, and the one-line error rule every command shares.

Every `AutopeftError` becomes one line on stderr and exit code 2, here and nowhere else. Commands
live in one module per group (`trial`, `space`, `study`, `results`) and register themselves on `app`.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from autopeft.errors import AutopeftError
from autopeft.train.verbosity import VERBOSE_ENV

try:  # Typer vendors its own Click (typer._click) since 0.2x; its usage errors are that Click's
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - an older Typer on the real Click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

if TYPE_CHECKING:
    from autopeft.store import Store

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
        except UsageError as err:  # a bad or missing option or argument, as Click parses them
            if isinstance(err, NoArgsIsHelpError):
                raise  # a bare command group prints its help
            where = f"{err.ctx.command_path}: " if err.ctx is not None else ""
            err_console.print(f"error: {where}{err.format_message()} (see --help)", markup=False,
                              highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


# No local variables in tracebacks: they would print a --storage URL's password.
app = typer.Typer(cls=_OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
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


STORAGE_ENV = "AUTOPEFT_STORAGE"
#: The `--storage` option every study command takes (default `sqlite:///autopeft.db`, or $AUTOPEFT_STORAGE).
Storage = Annotated[str, typer.Option("--storage", envvar=STORAGE_ENV,
                                      help="Store URL: sqlite:///FILE (default) or postgresql+psycopg://...")]


def open_store(url: str) -> Store:
    """The store at `url`; a missing SQLite file is an error here (reading must not create an empty store)."""
    from sqlalchemy.engine import make_url

    from autopeft.engine.checks import check_storage
    from autopeft.store import Store, StoreError, display_url

    parsed = make_url(check_storage(url))
    database = parsed.database
    on_disk = parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
    if on_disk and not Path(str(database)).expanduser().is_file():
        raise StoreError(f"no store at {database} ({display_url(url)}); run a study first or pass --storage")
    return Store(url)


def storage_option(url: str) -> tuple[str, str | None]:
    """The `--storage` part of a command we suggest, and a note to print with it, if any.

    A URL with a password is left out of the command (a hint must not print the secret, and a masked
    URL would not connect): the command then reads it from $AUTOPEFT_STORAGE, which the note names.
    """
    from autopeft.store import display_url, has_password

    if not has_password(url):
        return f" --storage {url}", None
    return "", f"(with {STORAGE_ENV} set to the store URL, password included: {display_url(url)})"
