"""The live view of a running study: trial counts, budget, and the current Pareto front.

Drawn with rich on stderr (stdout stays for results). `NullDisplay` is for tests and `--quiet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autopeft.engine.front import Front, empty_front_reason

FRONT_ROWS = 8


@dataclass(frozen=True)
class StudyProgress:
    """A moment of a study: what the display draws."""

    name: str
    counts: dict[str, int]  # by trial status
    budget_used: float  # full-trial equivalents finished
    budget_committed: float  # finished + running
    budget_total: float | None
    elapsed: float
    time_limit: float | None
    front: Front

    def headline(self) -> str:
        c = self.counts
        budget = f"{self.budget_used:.1f}" + (f"/{self.budget_total:g}" if self.budget_total else "")
        clock = _clock(self.elapsed) + (f"/{_clock(self.time_limit)}" if self.time_limit else "")
        return (f"{self.name}: {c.get('complete', 0)} complete · {c.get('running', 0)} running · "
                f"{c.get('paused', 0)} paused · {c.get('pruned', 0)} pruned · {c.get('failed', 0)} failed · "
                f"budget {budget} full trials · {clock}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def front_table(front: Front, *, limit: int | None = FRONT_ROWS, title: str | None = "Pareto front") -> Table:
    """The front as a table: trial, every objective, share of the model, and the plan in one line."""
    from autopeft.space.plan_text import plan_text

    caption = empty_front_reason(front) if not front.entries else (
        f"hypervolume {front.hypervolume:.4g} · {len(front.entries)} on the front of {len(front.completed)} "
        "full-fidelity trials")
    table = Table(title=title, caption=caption, title_justify="left")
    table.add_column("trial", justify="right")
    for objective in front.objectives:
        table.add_column(objective.name, justify="right")
    table.add_column("share", justify="right")
    table.add_column("lr", justify="right")
    table.add_column("plan")
    rows = front.entries if limit is None else front.entries[:limit]
    for entry in rows:
        share = entry.metrics.get("trainable_share")
        plan = entry.plan or {}
        table.add_row(str(entry.number), *(_fmt(entry.objectives[o.name]) for o in front.objectives),
                      "" if share is None else f"{100 * share:.3f}%",
                      _fmt(plan.get("learning_rate")) if plan.get("learning_rate") else "",
                      plan_text(plan.get("plan")) if plan else "")
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


class Display(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> Any: ...
    def update(self, progress: StudyProgress) -> None: ...
    def finish(self, progress: StudyProgress) -> None: ...


class NullDisplay:
    """Shows nothing."""

    def __enter__(self) -> NullDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, progress: StudyProgress) -> None:
        return None

    def finish(self, progress: StudyProgress) -> None:
        return None


class LineDisplay:
    """For logs and pipes, where a live table cannot redraw: a headline per change, and the front each time
    it changes (`front_lines`), on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._last = ""
        self._front: tuple[Any, ...] = ()

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, progress: StudyProgress) -> None:
        line = progress.headline()
        key = line.rsplit("·", 1)[0]  # the clock alone changing is not news
        if key != self._last:
            self._last = key
            self.console.print(line, highlight=False, soft_wrap=True)
        front = tuple(e.number for e in progress.front.entries)
        if front and front != self._front:
            self._front = front
            for text in front_lines(progress.front):
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finish(self, progress: StudyProgress) -> None:
        return None


def front_lines(front: Front, limit: int | None = FRONT_ROWS) -> list[str]:
    """The front as plain lines (one per trial, best score first), for logs: grep-able, never cut."""
    from autopeft.space.plan_text import plan_text

    lines = [f"front: {len(front.entries)} of {len(front.completed)} full-fidelity trials, hypervolume "
             f"{front.hypervolume:.4g}"]
    entries = front.entries if limit is None else front.entries[:limit]
    for entry in entries:
        share = entry.metrics.get("trainable_share")
        plan = entry.plan or {}
        values = ", ".join(f"{o.name} {_fmt(entry.objectives[o.name])}" for o in front.objectives)
        extra = [] if share is None else [f"share {100 * share:.3f}%"]
        if plan.get("learning_rate"):
            extra.append(f"lr {_fmt(plan['learning_rate'])}")
        if "plan" in plan:
            extra.append(f"plan {plan_text(plan['plan'])}")
        lines.append(f"  trial {entry.number}: " + ", ".join([values, *extra]))
    if limit is not None and len(front.entries) > limit:
        lines.append(f"  ... and {len(front.entries) - limit} more (autopeft pareto)")
    return lines


class LiveDisplay:
    """A headline and the front, redrawn in place as results arrive (rich `Live`, on stderr)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(Text("starting…"), console=console, refresh_per_second=2, transient=True)

    def __enter__(self) -> LiveDisplay:
        self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def update(self, progress: StudyProgress) -> None:
        self._live.update(Group(Text(progress.headline()), front_table(progress.front)))

    def finish(self, progress: StudyProgress) -> None:
        return None  # the CLI prints the final front on stdout
