"""The `autopeft` command line: a thin Typer layer over the Python API, one module per command group."""

from autopeft.cli import dashboard, evaluate, results, space, study, trial
from autopeft.cli.app import app

__all__ = ["app", "dashboard", "evaluate", "main", "results", "space", "study", "trial"]


def main() -> None:
    """Console-script entry point."""
    app()
