"""`autopeft study run | resume | list | show | delete` on a tiny saved BERT with a real SQLite store:
a whole study through the command line, then its front, resume with a larger budget, and bad input as
one stderr line with exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.cli.study import parse_duration
from autopeft.errors import ConfigError
from autopeft.store import Lease, Store, TrialStatus
from tests.cli import one_line_error
from tests.conftest import tiny_recipe_dict

runner = CliRunner()

TINY_SPACE = {
    "name": "tiny",
    "training": {"learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}},
    "searched_layers": "1-2",
    "layers": {"method": {"choices": ["none", "lora", "ia3"]},
               "rank": {"choices": [2, 4], "when": {"method": ["lora"]}}},
    "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}},
             {"method": "ia3", "when": {"method": ["ia3"]}}],
}


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path, str]:
    recipe, space = tmp_path / "recipe.yaml", tmp_path / "space.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=6, threads=1)), encoding="utf-8")
    space.write_text(yaml.safe_dump(TINY_SPACE), encoding="utf-8")
    return space, recipe, f"sqlite:///{tmp_path / 'studies.db'}"


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_study_runs_end_to_end_and_resumes_with_more_budget(files: tuple[Path, Path, str]) -> None:
    space, recipe, url = files
    code, out, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "t",
                          "--storage", url, "--strategy", "hyperband", "--budget", "2", "--executor", "inprocess",
                          "--seed", "3")
    assert code == 0, err
    assert "Pareto front of t" in out and "study t: complete" in out
    assert f"watch it: autopeft dashboard --study t --storage {url}" in err  # at the start, before the trials
    assert "rungs (eta 3): 2 -> 6 steps; new trials start 60% at 2, 40% at 6\n" in err  # the plan, before it too
    assert "proposals: scrambled Sobol (random) throughout\n" in err
    assert err.index("rungs (eta 3)") < err.index("watch it")

    store = Store(url)
    trials = store.trials("t")
    assert trials and all(t.status in (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED) for t in trials)
    complete = [t for t in trials if t.status is TrialStatus.COMPLETE]
    assert complete, "a hyperband study with a budget of 2 full trials finishes at least one"
    for trial in complete:
        assert trial.plan is not None and "plan" in trial.plan  # the compiled TrialConfig is stored
    results = store.results("t", fidelity=6)
    assert {r.trial_number for r in results} == {t.number for t in complete}
    for r in results:
        assert 0.0 <= r.objectives["score"] <= 1.0
        assert r.objectives["trainable_params"] == r.metrics["trainable_params"] > 0
        assert Path(r.metrics["trial_dir"]).is_dir()  # the checkpoint a promotion or export reads

    code, out, _ = _run("study", "list", "--storage", url, "--json")
    listed = json.loads(out)
    assert code == 0 and [s["name"] for s in listed] == ["t"] and listed[0]["status"] == "complete"
    code, out, _ = _run("study", "show", "t", "--storage", url, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["strategy"] == "hyperband" and shown["seed"] == 3
    assert 2.0 <= shown["budget_used"] < 3.0
    assert shown["driver"] is None  # the finished run released its lease
    assert shown["attempts"]["reported"] == len(store.results("t")) and shown["attempts"]["running"] == 0
    assert shown["workers"]["most_at_once"] == 1 and 0.0 <= shown["workers"]["idle_share"] < 1.0
    code, out, _ = _run("study", "show", "t", "--storage", url)
    assert code == 0 and "workers idle" in out and "of 1 worker(s)' time while trials remained to start" in out

    code, out, err = _run("study", "resume", "t", "--storage", url, "--budget", "4", "--executor", "inprocess")
    assert code == 0, err
    shown = json.loads(_run("study", "show", "t", "--storage", url, "--json")[1])
    assert 4.0 <= shown["budget_used"] < 5.0
    assert len(store.trials("t")) > len(trials)
    assert shown["options"]["budget"] == 4  # the study's budget is now 4: `study show` said "4.00 of 2"
    assert " of 4 full trials" in _run("study", "show", "t", "--storage", url)[1]
    code, out, err = _run("study", "resume", "t", "--storage", url, "--executor", "inprocess")  # no --budget: 4
    assert code == 0, err
    assert json.loads(_run("study", "show", "t", "--storage", url, "--json")[1])["budget_used"] < 5.0

    code, out, err = _run("study", "delete", "t", "--storage", url, "--yes")
    assert code == 0, err
    assert json.loads(_run("study", "list", "--storage", url, "--json")[1]) == []
    assert not (Path(url.removeprefix("sqlite:///")).parent / "autopeft_runs" / "t").exists()




def test_a_study_whose_checkpoints_were_deleted_resumes_by_training_again(files: tuple[Path, Path, str],
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The runs folder is gone (deleted, or a new machine): promoted trials train from step 0 and say so.

    The same study with its folder kept is the reference: its promoted trials continue from their
    checkpoints, and the scores agree, since a run from scratch is the run a checkpoint continues.
    """
    space, recipe, url = files
    base = ["--storage", url, "--executor", "inprocess"]
    for name in ("kept", "gone"):
        code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", name,
                            "--strategy", "hyperband", "--budget", "2", "--seed", "3", *base)
        assert code == 0, err
    runs = Path(url.removeprefix("sqlite:///")).parent / "autopeft_runs" / "gone"
    assert runs.is_dir()
    shutil.rmtree(runs)
    for name in ("kept", "gone"):
        code, _, err = _run("study", "resume", name, "--budget", "4", *base)
        assert code == 0, err

    store = Store(url)
    resumed = {(a.trial_number, a.fidelity) for a in store.attempts("gone")
               if a.resume_from and a.outcome == "reported"}
    assert resumed, "a budget of 4 promotes trials paused at the budget of 2"
    kept = {(r.trial_number, r.fidelity): r for r in store.results("kept")}
    gone = {(r.trial_number, r.fidelity): r for r in store.results("gone")}
    assert kept.keys() == gone.keys()  # the same study: the same promotions
    for number, fidelity in resumed:
        result = gone[(number, fidelity)]
        assert result.metrics["start_step"] == 0 and result.metrics["steps"] == fidelity  # trained from scratch
        assert kept[(number, fidelity)].metrics["start_step"] > 0  # continued from the checkpoint
        assert result.objectives["score"] == pytest.approx(kept[(number, fidelity)].objectives["score"], abs=1e-6)
        assert f"trial {number}: its checkpoint at " in caplog.text and "trained again from the start" in caplog.text
    assert json.loads(_run("study", "show", "gone", "--storage", url, "--json")[1])["status"] == "complete"


@pytest.mark.parametrize(("extra", "expected"), [
    (["--strategy", "bayes"], "strategy: unknown strategy 'bayes'; accepted: mobo-hyperband, mobo, hyperband"),
    (["--objectives", "score,accuracy"], "objectives: 'accuracy' is not an objective; accepted: score"),
    (["--budget", "0"], "budget: must be > 0"),
    (["--max-time", "soon"], "max-time: 'soon' is not a duration"),
])
def test_bad_options_are_one_line_and_create_no_study(files: tuple[Path, Path, str], extra: list[str],
                                                      expected: str) -> None:
    space, recipe, url = files
    code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "bad",
                        "--storage", url, *extra)
    assert code == 2
    assert expected in one_line_error(err)
    assert Store(url).list_studies() == []


def test_a_space_that_does_not_fit_the_model_names_the_file_and_field(files: tuple[Path, Path, str]) -> None:
    space, recipe, url = files
    space.write_text(yaml.safe_dump({**TINY_SPACE, "searched_layers": "3-5"}), encoding="utf-8")
    code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--storage", url)
    assert code == 2
    line = one_line_error(err)
    assert "searched_layers" in line
    assert Store(url).list_studies() == []


def test_missing_files_and_unknown_studies(files: tuple[Path, Path, str]) -> None:
    _, recipe, url = files
    code, _, err = _run("study", "run", "--space", "nope.yaml", "--trial", str(recipe), "--storage", url)
    assert code == 2 and "--space: no such file: nope.yaml" in one_line_error(err)
    Store(url).create_study("other")
    code, _, err = _run("study", "show", "missing", "--storage", url)
    assert code == 2 and "no study 'missing'" in one_line_error(err) and "other" in err
    code, _, err = _run("study", "resume", "missing", "--storage", url)
    assert code == 2


def test_a_study_held_by_a_live_driver_is_refused_unless_forced(files: tuple[Path, Path, str]) -> None:
    space, recipe, url = files
    from autopeft.engine.study import new_study

    store = Store(url)
    alive = Lease(owner="other-driver", host=socket.gethostname(), pid=os.getpid())  # this process: alive
    new_study(store, space, recipe, name="r", strategy="random", budget=1, lease=alive)
    code, _, err = _run("study", "resume", "r", "--storage", url, "--executor", "inprocess")
    line = one_line_error(err)
    assert code == 2 and f"{socket.gethostname()}:{os.getpid()}" in line and "--force" in line
    assert store.trials("r") == [] and store.get_study("r").lease_owner == "other-driver"  # nothing written
    code, _, err = _run("study", "resume", "r", "--storage", url, "--executor", "inprocess", "--force")
    assert code == 0, err
    record = store.get_study("r")
    assert record.status.value == "complete" and record.lease_owner is None  # released at the end


def test_a_crashed_drivers_study_is_taken_over_without_force(files: tuple[Path, Path, str]) -> None:
    space, recipe, url = files
    from autopeft.engine.study import new_study

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid no longer exists: the lease's holder is dead, however fresh its heartbeat
    store = Store(url)
    new_study(store, space, recipe, name="c", strategy="random", budget=1,
              lease=Lease(owner="crashed", host=socket.gethostname(), pid=gone.pid))
    code, _, err = _run("study", "resume", "c", "--storage", url, "--executor", "inprocess")
    assert code == 0, err
    assert store.get_study("c").status.value == "complete"


def test_durations() -> None:
    assert parse_duration("90") == 90 and parse_duration("30m") == 1800 and parse_duration("2h") == 7200
    assert parse_duration(None) is None
    with pytest.raises(ConfigError, match="max-time"):
        parse_duration("-3s")


@pytest.mark.parametrize("strategy", ["tpe", "hyperband"])
def test_a_single_objective_study_runs_the_same_way(files: tuple[Path, Path, str], strategy: str) -> None:
    space, recipe, url = files
    code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "one",
                          "--storage", url, "--strategy", strategy, "--budget", "2", "--executor", "inprocess",
                          "--objectives", "score")
    assert code == 0, err
    store = Store(url)
    assert [o["name"] for o in store.get_study("one").objectives] == ["score"]
    results = store.results("one")
    assert results and all(set(r.objectives) == {"score"} for r in results)
    code, out, err = _run("pareto", "one", "--storage", url, "--format", "json")
    front = json.loads(out)
    best = max(r.objectives["score"] for r in store.results("one", fidelity=6))
    chance = store.get_study("one").objectives[0]["reference"]
    if best > chance:
        assert front and {row["score"] for row in front} == {best}  # one objective: the front is the best (ties kept)
    else:  # the tiny model learnt nothing: no trial beats always predicting the most common label
        assert front == [] and "scores above chance" in err


def test_export_after_a_pooled_study_carries_the_trained_weights(files: tuple[Path, Path, str]) -> None:
    """Workers train with their own thread count; the checkpoint must still be the exported trial's."""
    space, recipe, url = files
    lora_only = {**TINY_SPACE, "layers": {"method": {"choices": ["lora"]}, "rank": {"choices": [2, 4]}},
                 "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"]}]}
    space.write_text(yaml.safe_dump(lora_only), encoding="utf-8")
    code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "w",
                        "--storage", url, "--strategy", "random", "--budget", "1", "--workers", "1")
    assert code == 0, err
    out = space.parent / "best"
    code, _, err = _run("export", "w", "--out", str(out), "--storage", url)
    if code != 0:  # the tiny model scored no better than chance: export says so and how to export one anyway
        assert "scores above chance" in err and "--trial N" in err, err
        code, _, err = _run("export", "w", "--trial", "0", "--out", str(out), "--storage", url)
    assert code == 0, err
    assert (out / "peft" / "adapter_config.json").is_file()
    assert (out / "peft" / "adapter_model.safetensors").is_file()


def test_study_run_warns_when_every_proposal_would_be_random(files: tuple[Path, Path, str]) -> None:
    space, recipe, url = files
    code, _, err = _run("study", "run", "--space", str(space), "--trial", str(recipe), "--name", "m",
                        "--storage", url, "--strategy", "mobo", "--budget", "1", "--executor", "inprocess", "-q")
    assert code == 0, err
    lines = err.splitlines()
    assert "rungs: 6 steps (every trial trains to full fidelity)" in lines
    assert "proposals: random until 8 results, then BoTorch qLogNEHVI (expected after about 8.0 full trials of " \
           "budget)" in lines
    assert ("warning: every proposal will be random: the budget of 1 full trials buys about 1 trials, and BoTorch "
            "qLogNEHVI needs 8 results first (a budget of 8.0 or more)") in lines


# -- study show: the trials table, on a study filled by the real loop (synthetic objective) --------------


def _show(url: str, *args: str) -> tuple[int, str, str]:
    return _run("study", "show", "hb", "--storage", url, *args)


def test_study_show_json_lists_every_trial_at_the_fidelity_it_reached(filled: str) -> None:
    store = Store(filled)
    code, out, err = _show(filled, "--json")
    assert code == 0, err
    shown = json.loads(out)
    trials, results = store.trials("hb"), store.results("hb")
    assert [(t["number"], t["status"], t["worker"], t["error"]) for t in shown["trials"]] == [
        (t.number, t.status.value, t.worker, t.error) for t in trials]
    for row in shown["trials"]:
        mine = [r for r in results if r.trial_number == row["number"]]
        assert row["fidelity"] == (mine[-1].fidelity if mine else None)
        assert row["score"] == (mine[-1].objectives["score"] if mine else None)
        assert row["plan"].startswith("L1-2 lora r")
    assert sum(shown["counts"].values()) == len(shown["trials"]) > 20
    store.close()


def test_study_show_filters_by_status_and_writes_csv(filled: str) -> None:
    import csv

    rows = json.loads(_show(filled, "--json")[1])["trials"]
    code, out, err = _show(filled, "--status", "pruned,failed", "--json")
    assert code == 0, err
    stopped = [r for r in rows if r["status"] in ("pruned", "failed")]
    assert json.loads(out)["trials"] == stopped and stopped
    code, out, err = _show(filled, "--status", "pruned", "--status", "failed", "--format", "csv")
    assert code == 0, err
    written = list(csv.DictReader(out.splitlines()))
    assert list(written[0]) == ["number", "status", "fidelity", "score", "trainable_params", "share_pct", "plan",
                                "worker", "error", "started", "finished"]
    assert [(int(r["number"]), r["status"], r["error"]) for r in written] == [
        (r["number"], r["status"], r["error"] or "") for r in stopped]
    assert [float(r["score"]) for r in written if r["score"]] == [r["score"] for r in stopped if r["score"] is not None]
    assert all(r["started"] == s["started"] for r, s in zip(written, stopped, strict=True))  # ISO 8601 both


def test_study_show_table_lists_the_latest_trials_or_all(filled: str) -> None:
    code, out, err = _show(filled)
    assert code == 0, err
    total = len(json.loads(_show(filled, "--json")[1])["trials"])
    assert f"the latest 20 of {total} trials; --trials lists them all" in out
    code, out, _ = _show(filled, "--trials", "--status", "failed")
    assert code == 0 and "trials (filtered by --status)" in out and "synthetic" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["--status", "done"], "status: 'done' is not a trial status; accepted: waiting, running, paused, complete"),
    (["--format", "xml"], "format: unknown format 'xml'; accepted: table, json, csv"),
])
def test_study_show_bad_options_are_one_line(filled: str, args: list[str], expected: str) -> None:
    code, out, err = _show(filled, *args)
    assert code == 2 and out == "" and expected in one_line_error(err)
