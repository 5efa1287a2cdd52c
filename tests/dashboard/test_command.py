"""`autopeft dashboard`: bad input is one line and exit 2 before Streamlit starts; a good store starts
`streamlit run` of the packaged app, headless, with the store URL in the environment only."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.cli.dashboard import app_path
from autopeft.store import Store
from tests.cli import one_line_error

runner = CliRunner()


class FakeExec:
    """Records the command instead of becoming Streamlit."""

    calls: ClassVar[list[tuple[list[str], dict[str, str]]]] = []

    @staticmethod
    def execve(path: str, command: list[str], env: dict[str, str]) -> None:
        assert path == command[0]
        FakeExec.calls.append((command, env))


@pytest.fixture
def popen(monkeypatch: pytest.MonkeyPatch) -> type[FakeExec]:
    FakeExec.calls = []
    monkeypatch.setattr(os, "execve", FakeExec.execve)
    return FakeExec


@pytest.fixture
def store_with_study(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = Store(url)
    store.create_study("demo")
    store.close()
    return url


@pytest.mark.parametrize("storage", [
    "sqlite:///{tmp}/missing.db",  # reading must not create an empty store
    "sqlite:///{tmp}/no/such/folder/a.db",
    "sqlite:///{tmp}",  # a folder
    "nonsense://x",
    "postgresql+psycopg://nobody:secret@127.0.0.1:1/none",  # nothing listens there
    "postgresql+psycopg://nobody@127.0.0.1:notaport/none",
])
def test_a_bad_store_is_one_line_and_starts_nothing(storage: str, tmp_path: Path, popen: type[FakeExec]) -> None:
    result = runner.invoke(app, ["dashboard", "--storage", storage.format(tmp=tmp_path)])
    assert result.exit_code == 2, result.output
    line = one_line_error(result.stderr)
    assert "secret" not in line
    assert popen.calls == [] and not (tmp_path / "missing.db").exists()


def test_an_unknown_study_is_one_line(store_with_study: str, popen: type[FakeExec]) -> None:
    result = runner.invoke(app, ["dashboard", "--storage", store_with_study, "--study", "nope"])
    assert result.exit_code == 2
    assert "no study 'nope'" in one_line_error(result.stderr) and "demo" in result.stderr
    assert popen.calls == []


def test_it_runs_the_packaged_app_headless(store_with_study: str, popen: type[FakeExec]) -> None:
    result = runner.invoke(app, ["dashboard", "--storage", store_with_study, "--study", "demo", "--host", "0.0.0.0",
                                 "--port", "8765"])
    assert result.exit_code == 0, result.output
    [(command, env)] = popen.calls
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == app_path() and app_path().is_file()
    assert Path(command[4]).parent.name == "dashboard" and Path(command[4]).parent.parent.name == "autopeft"
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.headless"] == "true" and options["--server.address"] == "0.0.0.0"
    assert options["--server.port"] == "8765" and options["--browser.gatherUsageStats"] == "false"
    assert env["AUTOPEFT_STORAGE"] == store_with_study and env["AUTOPEFT_DASHBOARD_STUDY"] == "demo"
    assert store_with_study not in " ".join(command)  # the URL (maybe with a password) is not for `ps` to show


def test_the_thin_entry_runs_the_packaged_app(store_with_study: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("AUTOPEFT_STORAGE", store_with_study)
    monkeypatch.delenv("AUTOPEFT_DASHBOARD_STUDY", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["Studies"]
