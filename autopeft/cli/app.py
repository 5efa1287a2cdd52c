"""The root Typer application, its consoles, and the one-line error rule every command shares.

Every `AutopeftError` becomes one line on stderr and exit code 2, here and nowhere else. Commands
live in one module per group (`trial`, `space`, `study`, `results`) and register themselves on `app`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from autopeft.errors import AutopeftError
from autopeft.train.progress import Speedometer
from autopeft.train.verbosity import VERBOSE_ENV, quiet_library_warnings

try:  # Typer vendors its own Click (typer._click) since 0.2x; its usage errors are that Click's
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - an older Typer on the real Click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

if TYPE_CHECKING:
    from autopeft.store import Store

err_console = Console(stderr=True)
console = Console()


#: The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells expect.
INTERRUPTED = 130
#: Width of tables written to a pipe or a log: no terminal to fit, so do not cut them at rich's 80.
PIPE_WIDTH = 200


class _OneLineErrors(TyperGroup):
    """Root group: any `AutopeftError` from any command becomes one stderr line and exit code 2; Ctrl-C, 130."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Click would print "Aborted!" and exit 1
            err_console.print("interrupted", markup=False, highlight=False)
            raise typer.Exit(INTERRUPTED) from None
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
    quiet_library_warnings(verbose)
    _fit_consoles()


def _fit_consoles() -> None:
    """Tables for a pipe or a log are as wide as they need (up to `PIPE_WIDTH`), not cut at 80 columns.

    Checked per command, not at import: the same process (a test, a notebook) may write to a terminal
    once and to a pipe the next time. A `COLUMNS` the user set still wins.
    """
    for each in (console, err_console):
        if not each.is_terminal and "COLUMNS" not in os.environ:
            each.width = PIPE_WIDTH


def training_progress(enabled: bool = True) -> AbstractContextManager[Any]:
    """What `trial run` and `train` show while a model trains, on stderr (stdout stays for the result).

    A bar with examples/s, loss and time left on a terminal; in a pipe or a log, where a bar cannot
    redraw, a plain line every `LineProgress.FRACTION` of the run or `LineProgress.SECONDS`, whichever
    comes first. Nothing when ``enabled`` is False (`--json`).
    """
    if not enabled:
        return nullcontext(None)
    return nullcontext(BarProgress(err_console) if err_console.is_terminal else LineProgress(err_console))


class BarProgress:
    """A transient rich bar: steps, examples/s, loss, time left."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self._bar: Any = None
        self._task: Any = None
        self._speed: Speedometer | None = None

    def begin(self, total_steps: int, done_steps: int, batch_size: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._speed = Speedometer(total_steps, done_steps, batch_size)
        self._bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), console=self.out, transient=True)
        self._task = self._bar.add_task("training", total=total_steps, completed=done_steps, info="")
        self._bar.start()

    def step(self, step: int, loss: float | None) -> None:
        if self._bar is None or self._speed is None:
            return
        point = self._speed.point(step, loss)
        self._bar.update(self._task, completed=step, info=point.line().split(" · ", 1)[-1])

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class LineProgress:
    """Plain progress lines for logs and pipes: at every tenth of the run or every 30 s, and at the end."""

    FRACTION = 0.1
    SECONDS = 30.0

    def __init__(self, out: Console, *, now: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self._now = now
        self._speed: Speedometer | None = None
        self._next_fraction = self.FRACTION
        self._last_line = 0.0

    def begin(self, total_steps: int, done_steps: int, batch_size: int) -> None:
        self._speed = Speedometer(total_steps, done_steps, batch_size, now=self._now)
        self._last_line = self._now()
        done = done_steps / total_steps if total_steps else 1.0
        self._next_fraction = (int(done / self.FRACTION) + 1) * self.FRACTION
        self._print(f"training: {total_steps - done_steps} steps to go of {total_steps}, batch {batch_size}")

    def step(self, step: int, loss: float | None) -> None:
        if self._speed is None:
            return
        point = self._speed.point(step, loss)
        due = point.fraction >= self._next_fraction - 1e-9 or self._now() - self._last_line >= self.SECONDS
        if due or step >= point.total:
            while self._next_fraction <= point.fraction + 1e-9:
                self._next_fraction += self.FRACTION
            self._last_line = self._now()
            self._print(f"training: {point.line()}")

    def end(self) -> None:
        self._speed = None

    def _print(self, line: str) -> None:
        self.out.print(line, markup=False, highlight=False, soft_wrap=True)


#: `--threads` and `--device`, shared by `trial run`, `train`, `study run` and `study resume`.
Threads = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads per trial (default: the cores this process may use, split between workers; "
    "overrides the recipe's training.threads).")]
Device = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda or cuda:N (default: the recipe's training.device, auto).")]

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
