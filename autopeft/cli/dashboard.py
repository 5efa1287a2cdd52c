"""`autopeft dashboard`: check the store, then serve the Streamlit app that ships in `autopeft.dashboard`."""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

from autopeft.cli.app import STORAGE_ENV, Storage, app, err_console, open_store
from autopeft.errors import ConfigError
from autopeft.store import DEFAULT_URL, display_url

#: The study the app opens on when its link names none (the `--study` option).
STUDY_ENV = "AUTOPEFT_DASHBOARD_STUDY"


def app_path() -> Path:
    """The packaged Streamlit script (`autopeft/dashboard/app.py`), wherever autopeft is installed."""
    spec = find_spec("autopeft.dashboard")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a broken install
        raise ConfigError("the package autopeft.dashboard is missing from this install")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def check_dashboard_store(storage: str, study: str | None) -> list[str]:
    """The store's study names, read once: the store must exist and answer, and `study` must be one of them."""
    from autopeft.dashboard.data import open_read_only
    from autopeft.store import NotFoundError

    open_store(storage).close()  # a malformed URL or a missing SQLite file: one line, as every command says it
    store = open_read_only(storage)  # what the app opens: it must answer read-only (server up, tables there)
    try:
        names = [record.name for record in store.list_studies()]
    finally:
        store.close()
    if study is not None and study not in names:
        known = ", ".join(names) if names else "none"
        raise NotFoundError(f"no study {study!r} in {display_url(storage)}; studies: {known}")
    return names


def streamlit_command(host: str, port: int) -> list[str]:
    """`streamlit run` of the packaged app, headless, on `host:port`, with nothing sent outside."""
    return [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.headless", "true", "--server.address", host, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "viewer"]


@app.command("dashboard")
def dashboard(
    storage: Storage = DEFAULT_URL,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8501,
    study: Annotated[str | None, typer.Option("--study", help="Open on this study (default: the studies "
                                              "page).")] = None,
) -> None:
    """Browse the store's studies in a browser (Streamlit): fronts, hypervolume, learning curves, export."""
    if find_spec("streamlit") is None or find_spec("plotly") is None:
        raise ConfigError("the dashboard needs Streamlit and plotly: pip install 'autopeft[dashboard]'")
    check_dashboard_store(storage, study)
    # The URL travels in the environment, never on the command line (where `ps` would show a password).
    env = {**os.environ, STORAGE_ENV: storage}
    env.pop(STUDY_ENV, None)
    if study is not None:
        env[STUDY_ENV] = study
    where = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
    err_console.print(f"dashboard of {display_url(storage)} on {where} (Ctrl-C stops it)", highlight=False)
    command = streamlit_command(host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    # This process becomes Streamlit: Ctrl-C, SIGTERM and the exit code are its own, and no child is left behind.
    os.execve(command[0], command, env)
