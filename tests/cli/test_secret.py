"""A store password never shows: every command run on a PostgreSQL URL that carries one (study run, resume,
list, show, pareto, export, and their errors) prints it nowhere, logs it nowhere, and writes it to no file;
the URL shows with the password masked, and suggested commands point at $AUTOPEFT_STORAGE instead."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.store import display_url, has_password
from autopeft.store.urls import hide_secrets
from autopeft.train.tasks.types import TaskData
from tests.cli import one_line_error
from tests.cli.test_study import TINY_SPACE
from tests.conftest import tiny_recipe_dict
from tests.store_fixtures import PG_DB, PG_HOST, PG_PORT, pg_schema

SECRET = "S3cretPw"
runner = CliRunner()


def test_display_url_masks_every_password() -> None:
    assert display_url(f"postgresql+psycopg://me:{SECRET}@db:5432/x") == "postgresql+psycopg://me:***@db:5432/x"
    assert SECRET not in display_url(f"postgresql+psycopg://me@db/x?password={SECRET}&sslmode=require")
    assert SECRET not in display_url(f"postgresql+psycopg://me:{SECRET}@db:notaport/x")  # unparsable
    assert display_url("postgresql+psycopg://me@db/x") == "postgresql+psycopg://me@db/x"
    assert display_url("sqlite:///autopeft.db") == "sqlite:///autopeft.db"
    assert has_password(f"postgresql+psycopg://me:{SECRET}@db/x") and not has_password("sqlite:///a.db")
    url = f"postgresql+psycopg://me:{SECRET}@db/x"
    assert hide_secrets(f"cannot reach {url}: password {SECRET} refused", url) == (
        "cannot reach postgresql+psycopg://me:***@db/x: password *** refused")


@pytest.fixture
def secret_url() -> Iterator[str]:
    """A PostgreSQL URL with a password in a schema of its own (trust auth accepts any password)."""
    import psycopg

    with pg_schema() as (user, schema):
        yield f"postgresql+psycopg://{user}:{SECRET}@{PG_HOST}:{PG_PORT}/{PG_DB}?options=-csearch_path%3D{schema}"
        with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
            for table in tables:
                rows = conn.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t').fetchall()
                assert not any(SECRET in row[0] for row in rows), f"the password is stored in {table}"
            assert tables, "the commands wrote the study to this schema"


def test_the_password_appears_in_no_output_and_no_file(secret_url: str, tmp_path: Path, tiny_model_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # checkpoints of a PostgreSQL study go to ./autopeft_runs
    # The tiny model learns nothing (its trials score at chance, so no front to export): measure from 0 here.
    monkeypatch.setattr(TaskData, "chance", property(lambda self: 0.0))
    caplog.set_level(logging.DEBUG)
    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=6, threads=1)), encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    masked = display_url(secret_url)
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), env={"COLUMNS": "300"})
        outputs.extend([result.stdout, result.stderr])
        assert result.exit_code == code, result.output
        return result.stdout + result.stderr

    out = run("-v", "study", "run", "--space", str(space), "--trial", str(recipe), "--name", "t", "--storage",
              secret_url, "--strategy", "hyperband", "--budget", "1", "--executor", "inprocess", "--seed", "3")
    assert f"store {masked}" in out
    assert "next: autopeft export t --out exported/\n" in out and "AUTOPEFT_STORAGE" in out, out
    assert "watch it: autopeft dashboard --study t\n" in out, out
    run("study", "resume", "t", "--storage", secret_url, "--budget", "2", "--executor", "inprocess")
    assert masked[:masked.index("@") + 1] in run("study", "list", "--storage", secret_url)  # the table's title
    run("study", "list", "--storage", secret_url, "--json")
    run("study", "show", "t", "--storage", secret_url)
    run("study", "show", "t", "--storage", secret_url, "--json")
    run("pareto", "t", "--storage", secret_url)
    run("pareto", "t", "--storage", secret_url, "--format", "json")
    run("export", "t", "--out", str(tmp_path / "exported"), "--storage", secret_url)
    bundle = yaml.safe_load((tmp_path / "exported" / "autopeft.yaml").read_text(encoding="utf-8"))
    assert bundle["provenance"]["storage"] == masked
    # errors name the store too: an unknown study, a URL that does not parse, a server that is not there
    one_line_error(run("study", "show", "nope", "--storage", secret_url, code=2))
    bad_port = secret_url.replace(f":{PG_PORT}/", ":notaport/")
    one_line_error(run("study", "list", "--storage", bad_port, code=2))
    one_line_error(run("study", "list", "--storage", secret_url.replace(f":{PG_PORT}/", ":1/"), code=2))
    one_line_error(run("dashboard", "--study", "nope", "--storage", secret_url, code=2))
    one_line_error(run("dashboard", "--storage", secret_url.replace(f":{PG_PORT}/", ":1/"), code=2))

    assert outputs and not any(SECRET in text for text in outputs), "the password was printed"
    assert SECRET not in caplog.text, "the password was logged"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "autopeft.yaml" for p in files) and any("autopeft_runs" in p.parts for p in files)
    leaked = [p for p in files if p != recipe and p != space and SECRET.encode() in p.read_bytes()]
    assert leaked == [], "the password was written to a file"
