"""`autopeft trial run` through Typer's CliRunner (stdout and stderr apart): JSON and table results on a
tiny saved BERT, and every user error as one stderr line naming the file and field, with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.peft.plan import METHOD_NAMES
from tests.cli import one_line_error
from tests.conftest import TINY_PLAN, tiny_recipe_dict

runner = CliRunner()


@pytest.fixture
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmax=6, threads=1)), encoding="utf-8")
    return path


def _config(tmp_path: Path, plan: dict[str | int, object], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"plan": plan, "learning_rate": 5e-3}), encoding="utf-8")
    return path




def test_trial_run_json(recipe_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "complete"
    assert data["fidelity"] == 6 and data["steps"] == 6
    assert 0.0 <= data["score"] <= 1.0
    assert data["trainable_params"] > 0
    assert data["dev_metrics"] is None


def test_trial_run_table_with_fidelity_dev_and_trial_dir(recipe_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    args = ["trial", "run", "--trial", str(recipe_file), "--config", str(config), "--fidelity", "3", "--dev",
            "--trial-dir", str(tmp_path / "t")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for key in ("status", "complete", "score", "dev_metrics", "accuracy", "trainable_params", "trainable_share"):
        assert key in result.stdout
    assert (tmp_path / "t" / "state.pt").is_file()
    again = runner.invoke(app, [*args[:-2], "--trial-dir", str(tmp_path / "t"), "--fidelity", "6", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["steps"] == 6


BAD_PLANS: dict[str, tuple[dict[str | int, object], str, str]] = {
    "unknown method": ({"all": [{"method": "loraz", "r": 4}]}, "plan.all",
                       f"accepted: {', '.join(METHOD_NAMES)}"),
    "rank 0": ({"all": [{"method": "lora", "r": 0}]}, "plan.all", "greater than 0"),
    "layer out of range": ({"0-5": [{"method": "lora", "r": 4}]}, "plan.0-5", "layer 3 is out of range"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_bad_config_is_one_line_and_exit_2(case: str, recipe_file: Path, tmp_path: Path) -> None:
    plan, field, message = BAD_PLANS[case]
    config = _config(tmp_path, plan)
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(config), "--json"])
    assert result.exit_code == 2, result.output
    line = one_line_error(result.stderr)
    assert line.startswith(f"error: {config}: {field}: ")
    assert message in line
    assert result.stdout == ""


def test_missing_recipe_file(tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    missing = tmp_path / "nope.yaml"
    result = runner.invoke(app, ["trial", "run", "--trial", str(missing), "--config", str(config)])
    assert result.exit_code == 2
    assert one_line_error(result.stderr) == f"error: {missing}: file not found"


def test_bad_recipe_field(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tiny_recipe_dict(tiny_model_dir)
    data["fidelity"] = {"min": 20, "max": 10}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe), "--config", str(_config(tmp_path, {}))])
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert line.startswith(f"error: {recipe}: fidelity: ") and "must not exceed" in line


def test_fidelity_above_max(recipe_file: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, TINY_PLAN)
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(config),
                                 "--fidelity", "7"])
    assert result.exit_code == 2
    assert one_line_error(result.stderr) == "error: fidelity: 7 is outside 1-6 (steps)"


def test_trial_dir_of_another_config_is_one_line(recipe_file: Path, tmp_path: Path) -> None:
    trial_dir = tmp_path / "t"
    first = _config(tmp_path, TINY_PLAN, "first.yaml")
    runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(first), "--fidelity", "2",
                        "--trial-dir", str(trial_dir), "--json"])
    other = _config(tmp_path, {"2": [{"method": "lora", "r": 2}]}, "other.yaml")
    result = runner.invoke(app, ["trial", "run", "--trial", str(recipe_file), "--config", str(other),
                                 "--trial-dir", str(trial_dir), "--json"])
    assert result.exit_code == 2
    assert "another configuration" in one_line_error(result.stderr)


def test_trial_run_help() -> None:
    result = runner.invoke(app, ["trial", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--trial", "--config", "--fidelity", "--json", "--trial-dir", "--dev"):
        assert option in result.stdout


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "trial" in result.output


# -- trial show: on `filled` (tests/cli/conftest.py), a study run by the real loop, on SQLite and PostgreSQL --


def _show(url: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["trial", "show", *args, "--storage", url])
    return result.exit_code, result.stdout, result.stderr


def test_trial_show_json_is_what_the_store_holds(filled: str) -> None:
    from autopeft.space.plan_text import plan_text
    from autopeft.store import Store

    store = Store(filled)
    results, attempts = store.results("hb"), store.attempts("hb")
    one_of_each = {t.status: t for t in reversed(store.trials("hb"))}  # the first trial in each status
    assert {s.value for s in one_of_each} == {"complete", "pruned", "failed"}
    for trial in one_of_each.values():
        code, out, err = _show(filled, "hb", str(trial.number), "--json")
        assert code == 0, err
        shown = json.loads(out)
        assert (shown["number"], shown["status"], shown["error"], shown["worker"], shown["bracket"]) == (
            trial.number, trial.status.value, trial.error, trial.worker, trial.bracket)
        assert shown["config"] == trial.config and shown["plan"] == trial.plan
        assert shown["plan_text"] == plan_text(trial.plan["plan"]) and shown["plan_text"].startswith("L1-2 lora r")
        mine = [r for r in results if r.trial_number == trial.number]
        assert [(r["fidelity"], r["objectives"], r["metrics"]) for r in shown["results"]] == [
            (r.fidelity, r.objectives, r.metrics) for r in mine]  # every fidelity, early ones of pruned trials too
        assert shown["fidelity"] == (mine[-1].fidelity if mine else None) and shown["max_fidelity"] == 27
        jobs = [a for a in attempts if a.trial_number == trial.number]
        assert [(j["attempt"], j["fidelity"], j["outcome"], j["worker"]) for j in shown["attempts"]] == [
            (a.number, a.fidelity, a.outcome.value, a.worker) for a in jobs]
        assert shown["started"] == trial.started_at.isoformat() and shown["seconds"] >= 0
    store.close()


def test_trial_show_table(filled: str) -> None:
    from autopeft.store import Store

    trials = Store(filled).trials("hb")
    pruned = next(t for t in trials if t.status.value == "pruned" and t.bracket == 0 and (t.plan or {}))
    code, out, err = _show(filled, "hb", str(pruned.number))
    assert code == 0, err
    for text in (f"trial {pruned.number} of hb", "pruned", "of 27 steps", "configuration", "results per fidelity",
                 "jobs", "reported", "L1-2 lora r"):
        assert text in out
    failed = next(t for t in trials if t.status.value == "failed")
    code, out, _ = _show(filled, "hb", str(failed.number))
    assert code == 0 and "RuntimeError: synthetic failure" in out and "results per fidelity" not in out


def test_trial_show_unknown_study_or_trial_is_one_line(filled: str) -> None:
    code, out, err = _show(filled, "hb", "999")
    assert code == 2 and out == ""
    assert one_line_error(err).startswith("error: study 'hb' has no trial 999 (trials 0-")
    code, _, err = _show(filled, "nope", "1")
    assert code == 2 and "no study named 'nope'" in one_line_error(err)
