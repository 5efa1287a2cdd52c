"""`study run --no-defaults` and `--warm-start OTHER` on the tiny model, and the seeds labelled where a study's
trials are shown (`pareto`'s origin column, `trial show`, `study show`): real studies in a real store (SQLite,
and PostgreSQL when it is reachable)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.engine.checks import check_study
from autopeft.engine.definition import StudyDefinition
from autopeft.engine.front import study_front
from autopeft.engine.loop import Budget
from autopeft.engine.study import create_study, run_study, seed_configs
from autopeft.store import Store
from tests.cli.test_study import TINY_SPACE
from tests.conftest import tiny_recipe_dict
from tests.engine.test_warm_start import fake_runner

runner = CliRunner()

DEFAULTS = [
    {"name": "LoRA r=2 on query and value", "values": {"learning_rate": 5.0e-3, "method": "lora", "rank": 2}},
    {"name": "IA3", "values": {"learning_rate": 5.0e-3, "method": "ia3"}},
    {"name": "the head alone", "values": {"learning_rate": 5.0e-3, "method": "none"}},
]
#: The default configurations of SPACE on the tiny model (its searched layers 1-2), in order.
DEFAULT_CONFIGS = [
    {"learning_rate": 5.0e-3, "layer_1.method": "lora", "layer_1.rank": 2, "layer_2.method": "lora",
     "layer_2.rank": 2},
    {"learning_rate": 5.0e-3, "layer_1.method": "ia3", "layer_2.method": "ia3"},
    {"learning_rate": 5.0e-3, "layer_1.method": "none", "layer_2.method": "none"},
]
SPACE = {**TINY_SPACE, "defaults": DEFAULTS}


@pytest.fixture
def paths(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(tmp_path)  # a PostgreSQL study's checkpoints go to ./autopeft_runs
    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=2, threads=1)), encoding="utf-8")
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    return space, recipe


def _run(*args: str) -> tuple[str, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def _study(paths: tuple[Path, Path], url: str, name: str, budget: int, *extra: str) -> str:
    """Run study ``name`` with random proposals at full fidelity: a trial per unit of budget, in order."""
    space, recipe = paths
    return _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", name, "--storage", url,
                "--strategy", "random", "--budget", str(budget), "--executor", "inprocess", "-q", *extra)[1]


def _configs(store: Store, name: str) -> list[dict[str, Any]]:
    return [dict(t.config) for t in sorted(store.trials(name), key=lambda t: t.number)]


def test_no_defaults_stores_no_seeds_and_proposes_no_default_first(paths: tuple[Path, Path], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    err = _study(paths, url, "plain", 1, "--no-defaults")
    assert "first:" not in err
    err = _study(paths, url, "seeded", 1)
    assert "first: 3 of the space's defaults\n" in err
    store = Store(url)
    plain = StudyDefinition.from_record(store.get_study("plain"))
    assert seed_configs(plain) == [] and plain.options["seeds"] == []
    assert _configs(store, "plain")[0] not in DEFAULT_CONFIGS
    seeded = StudyDefinition.from_record(store.get_study("seeded"))
    assert seed_configs(seeded) == DEFAULT_CONFIGS
    assert _configs(store, "seeded") == DEFAULT_CONFIGS[:1]  # the first trial is the first default
    store.close()


def test_a_warm_start_proposes_the_other_front_then_the_defaults_and_pareto_labels_them(
        paths: tuple[Path, Path], store_url: str) -> None:
    url = store_url
    store = Store(url)
    # The other study (another task, say): random configurations, none a default, scored by a runner that puts
    # them above chance, where the tiny model is not.
    space, recipe = paths
    create_study(store, check_study(space, recipe, name="other", strategy="random", seed=2, defaults=False))
    run_study(store, "other", budget=Budget(trials=4), executor="inprocess", runner=fake_runner,
              runs_dir=space.parent / "runs")
    front = study_front(store, "other").entries
    assert len(front) >= 2

    err = _study(paths, url, "new", len(front) + len(DEFAULTS), "--warm-start", "other")
    assert f"first: {len(front)} from the front of other, then 3 of the space's defaults\n" in err
    expected = [(f"warm start: other #{e.number}", e.config) for e in front]  # best score first
    expected += [(f"default: {d['name']}", c) for d, c in zip(DEFAULTS, DEFAULT_CONFIGS, strict=True)]
    assert _configs(store, "new") == [c for _, c in expected]

    rows = json.loads(_run("pareto", "new", "--storage", url, "--all", "--format", "json")[0])
    assert sorted((r["trial"], r["origin"]) for r in rows) == [(i, name) for i, (name, _) in enumerate(expected)]
    front_rows = json.loads(_run("pareto", "new", "--storage", url, "--format", "json")[0])
    assert all(r["origin"] == expected[r["trial"]][0] for r in front_rows)
    written = list(csv.DictReader(_run("pareto", "new", "--storage", url, "--all", "--format", "csv")[0]
                                  .splitlines()))
    assert {int(r["trial"]): r["origin"] for r in written} == {i: name for i, (name, _) in enumerate(expected)}
    table = _run("pareto", "new", "--storage", url, "--all")[0]
    assert "origin" in table and "warm start: other" in table

    # The other study's own trials were the search's: no origin, and no origin column in its table.
    other = json.loads(_run("pareto", "other", "--storage", url, "--all", "--format", "json")[0])
    assert len(other) == 4 and all(r["origin"] is None for r in other)
    assert "origin" not in _run("pareto", "other", "--storage", url)[0]

    shown = json.loads(_run("trial", "show", "new", "0", "--storage", url, "--json")[0])
    assert shown["origin"] == expected[0][0]
    last = len(expected) - 1
    [line] = [li for li in _run("trial", "show", "new", str(last), "--storage", url)[0].splitlines() if "origin" in li]
    assert expected[last][0] in line
    listed = json.loads(_run("study", "show", "new", "--storage", url, "--json")[0])["trials"]
    assert [r["origin"] for r in listed] == [name for name, _ in expected]
    assert "default: the head alone" in _run("study", "show", "new", "--storage", url)[0]
    store.close()
