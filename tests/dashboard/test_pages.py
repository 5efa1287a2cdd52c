"""Every page of the dashboard through Streamlit's AppTest, on stores the real study loop filled (SQLite and
PostgreSQL): what each page plots or picks is what the CLI says, and bad input is one error on the page."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from autopeft.cli import app as cli
from autopeft.store import Store, TrialStatus
from tests.dashboard.studies import create, fill

APP = Path(__file__).resolve().parents[2] / "autopeft" / "dashboard" / "app.py"
runner = CliRunner()


@pytest.fixture
def filled(store_url: str, tmp_path: Path, tiny_model_dir: Path) -> str:
    """Two finished studies, `demo` (Hyperband) and `other` (random search); returns the store URL."""
    fill(store_url, "demo", tiny_model_dir, tmp_path)
    fill(store_url, "other", tiny_model_dir, tmp_path, strategy="random", budget=4)
    return store_url


def page(url: str, monkeypatch: pytest.MonkeyPatch, **params: Any) -> AppTest:
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    monkeypatch.delenv("AUTOPEFT_DASHBOARD_STUDY", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = str(value)
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def one_error(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1, [e.value for e in at.error]
    message = str(at.error[0].value)
    assert "\n" not in message.strip() and "Traceback" not in message
    return message


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [_decoded(json.loads(element.proto.spec)) for element in at.get("plotly_chart")]


def _decoded(spec: Any) -> Any:
    """Plotly's JSON with its typed arrays (``{"dtype", "bdata"}``, how NumPy arrays travel) as plain lists."""
    if isinstance(spec, dict) and "bdata" in spec and "dtype" in spec:
        values = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=spec["dtype"]).tolist()
        return [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    if isinstance(spec, dict):
        return {k: _decoded(v) for k, v in spec.items()}
    return [_decoded(v) for v in spec] if isinstance(spec, list) else spec


def front_trials(at: AppTest) -> list[int]:
    """The trial numbers of the front trace of the study page's front chart."""
    for spec in charts(at):
        for trace in spec.get("data", []):
            if trace.get("name") == "Pareto front":
                return sorted(int(n) for n in trace.get("customdata", []))
    raise AssertionError("no 'Pareto front' trace on the page")


def cli_json(*args: str) -> Any:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def exported(url: str, out: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(cli, ["export", "demo", "--storage", url, "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return yaml.safe_load((out / "autopeft.yaml").read_text())


def test_every_page_renders(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    studies = ok(page(filled, monkeypatch))
    assert [t.value for t in studies.title] == ["Studies"]
    table = studies.dataframe[0].value
    assert list(table["study"]) == ["demo", "other"]
    assert ok(page(filled, monkeypatch, page="studies")).title[0].value == "Studies"
    study = ok(page(filled, monkeypatch, study="demo"))
    assert study.title[0].value == "Study demo" and len(charts(study)) >= 6
    for trial in Store(filled).trials("demo"):
        at = ok(page(filled, monkeypatch, study="demo", trial=trial.number))
        assert at.title[0].value == f"Trial {trial.number} of demo"
    compare = ok(page(filled, monkeypatch, page="compare", studies="demo,other"))
    assert compare.multiselect[0].value == ["demo", "other"] and len(charts(compare)) == 2


def test_the_plotted_front_is_the_pareto_command(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = cli_json("pareto", "demo", "--storage", filled, "--format", "json")
    at = ok(page(filled, monkeypatch, study="demo"))
    assert rows and front_trials(at) == sorted(r["trial"] for r in rows)
    # The toggles redraw it: log scale, and the stopped-early trials marked apart (the front unchanged).
    at.toggle(key="log_x").set_value(True)
    at.toggle(key="show_pruned").set_value(True)
    ok(at.run())
    assert front_trials(at) == sorted(r["trial"] for r in rows)
    names = [t.get("name", "") for spec in charts(at) for t in spec.get("data", [])]
    assert any(n.startswith("stopped early") for n in names)


def test_the_hypervolume_history_is_the_stored_snapshots(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(filled)
    at = ok(page(filled, monkeypatch, study="demo"))
    plotted = [t for spec in charts(at) for t in spec.get("data", []) if t.get("name") == "demo"
               and "hypervolume" in str(t.get("hovertext", ""))]
    assert len(plotted) == 2  # against budget and against wall time
    stored = [s.hypervolume for s in store.pareto_snapshots("demo") if s.hypervolume is not None]
    assert stored and all(trace["y"] == pytest.approx(stored) for trace in plotted)


def test_the_trials_table_filters_by_status_and_the_failed_trial_shows_its_error(
        filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trials = Store(filled).trials("demo")
    at = ok(page(filled, monkeypatch, study="demo"))
    table = at.dataframe(key="trials")
    assert sorted(table.value["number"]) == [t.number for t in trials]
    assert "Download CSV" in [b.label for b in at.download_button]
    at.multiselect(key="status_filter").set_value(["complete"])
    ok(at.run())
    shown = at.dataframe(key="trials").value
    assert set(shown["status"]) == {"complete"}
    assert sorted(shown["number"]) == sorted(t.number for t in trials if t.status is TrialStatus.COMPLETE)
    failed = next(t for t in trials if t.status is TrialStatus.FAILED)
    at = ok(page(filled, monkeypatch, study="demo", trial=failed.number))
    assert any("synthetic failure" in c.value for c in at.code)
    assert any("only trials completed at full fidelity" in str(i.value) for i in at.info)


@pytest.mark.parametrize("by", ["parameter budget", "score floor"])
def test_the_picker_chooses_what_export_chooses(filled: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                by: str) -> None:
    rows = cli_json("pareto", "demo", "--storage", filled, "--format", "json")
    assert len(rows) >= 2
    middle = rows[len(rows) // 2]
    at = ok(page(filled, monkeypatch, study="demo"))
    at.radio(key="pick_by").set_value(by)
    ok(at.run())
    if by == "parameter budget":
        value, flag, key = middle["share_pct"] * 1.0001, "--max-params-pct", "max_params_pct"
    else:
        value, flag, key = middle["score"] - 1e-9, "--min-score", "min_score"
    at.slider(key=key).set_value(value)
    ok(at.run())
    written = exported(filled, tmp_path / "out", flag, repr(value))
    assert at.session_state["picked_trial"] == written["provenance"]["trial"]
    assert any(f"{flag} {value:g}" in c.value for c in at.code)


def test_the_downloaded_bundle_is_what_export_writes(filled: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    best = cli_json("pareto", "demo", "--storage", filled, "--format", "json")[0]["trial"]
    written = exported(filled, tmp_path / "out", "--trial", str(best))
    at = ok(page(filled, monkeypatch, study="demo", trial=best))
    labels = [b.label for b in at.download_button]
    assert labels == ["Download autopeft.yaml", "Download adapter_config.json (peft)"]
    served = next(yaml.safe_load(c.value) for c in at.code if c.language == "yaml")
    for bundle in (served, written):
        assert bundle["provenance"].pop("exported_at")  # the one field that legitimately differs
    assert served == written
    adapter = next(json.loads(c.value) for c in at.code if c.language == "json")
    assert adapter == json.loads((tmp_path / "out" / "peft" / "adapter_config.json").read_text())
    command = next(c.value for c in at.code if c.language == "bash")
    assert command.startswith(f"autopeft export demo --trial {best} --out ")


@pytest.mark.parametrize(("params", "says"), [
    ({"study": "nope"}, "no study 'nope'"),
    ({"study": "demo", "trial": "999"}, "has no trial 999"),
    ({"study": "demo", "trial": "x"}, "is not a trial number"),
    ({"page": "trial"}, "needs a study"),
    ({"page": "nowhere"}, "no page 'nowhere'"),
    ({"page": "compare", "studies": "demo,nope"}, "no study 'nope'"),
])
def test_a_bad_link_is_one_error(filled: str, monkeypatch: pytest.MonkeyPatch, params: dict[str, str],
                                 says: str) -> None:
    assert says in one_error(page(filled, monkeypatch, **params))


def test_an_empty_store_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).create_all()
    assert "no studies in" in one_error(page(url, monkeypatch))
    assert "no studies in" in one_error(page(url, monkeypatch, page="compare"))


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/missing.db", "nonsense://x", "sqlite:///{tmp}",
                                 "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"])
def test_a_bad_storage_url_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    message = one_error(page(url.format(tmp=tmp_path), monkeypatch))
    assert "secret" not in message


def test_a_study_without_a_full_fidelity_result_is_one_error(tmp_path: Path, tiny_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'young.db'}"
    store = Store(url)
    create(store, "young", tiny_model_dir, tmp_path)
    trial = store.create_trial("young", {"x": 0.5, "y": 0.5})
    store.set_trial_status(trial.id, TrialStatus.RUNNING)
    store.record_result(trial.id, 1, {"score": 0.4, "trainable_params": 500_000.0}, {})
    assert "no trial has completed at full fidelity yet" in one_error(page(url, monkeypatch, study="young"))
    assert "running: trial 0 at fidelity 1" in " ".join(c.value for c in page(url, monkeypatch, study="young").caption)


def test_a_study_whose_trials_all_score_at_chance_warns_and_still_lists_them(tmp_path: Path, tiny_model_dir: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every full-fidelity trial at or below chance: no front, one warning that says why and what to do."""
    from autopeft.engine.definition import StudyDefinition, make_objectives
    from tests.dashboard.studies import BASE, compile_config, definition
    from tests.engine.synthetic import MAX_F

    url = f"sqlite:///{tmp_path / 'flat.db'}"
    store = Store(url)
    made = definition(tiny_model_dir, tmp_path)
    chance = make_objectives(("score", "trainable_params"), base_params=BASE, chance=0.5)
    made = StudyDefinition(space=made.space, recipe=made.recipe, objectives=chance, recipe_dir=made.recipe_dir)
    store.create_study("flat", space=made.space_json(), recipe=made.recipe_json(), objectives=made.objectives_json(),
                       strategy="hyperband", seed=0)
    for score in (0.45, 0.5):
        config = {"x": score, "y": 0.5}
        trial = store.create_trial("flat", config, plan=compile_config(config))
        store.record_result(trial.id, MAX_F, {"score": score, "trainable_params": 500_000.0}, {})
        store.set_trial_status(trial.id, TrialStatus.COMPLETE)

    at = ok(page(url, monkeypatch, study="flat"))
    assert [w.value for w in at.warning] == [
        "study flat: none of its 2 full-fidelity trial(s) scores above chance (0.5, what always predicting the most "
        "common label scores); `pareto --all` lists them, `export --trial N` exports one"]
    assert {"Pareto front", "Trials"} <= {h.value for h in at.subheader}  # the rest of the page is still there


def test_three_objectives_show_a_3d_front_and_its_projections(tmp_path: Path, tiny_model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'three.db'}"
    fill(url, "three", tiny_model_dir, tmp_path, seconds=True)
    at = ok(page(url, monkeypatch, study="three"))
    kinds = [trace.get("type") for spec in charts(at) for trace in spec.get("data", [])]
    assert "scatter3d" in kinds
    rows = cli_json("pareto", "three", "--storage", url, "--format", "json")
    assert front_trials(at) == sorted(r["trial"] for r in rows)
    fronts = [t for spec in charts(at) for t in spec.get("data", []) if t.get("name") == "Pareto front"]
    assert len(fronts) == 1 + 1 + 3  # the score-params front, the 3-D one, and the three projections


def test_the_dashboard_opens_on_its_study(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOPEFT_STORAGE", filled)
    monkeypatch.setenv("AUTOPEFT_DASHBOARD_STUDY", "other")
    at = ok(AppTest.from_file(str(APP), default_timeout=120).run())
    assert at.title[0].value == "Study other"
