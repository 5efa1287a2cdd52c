"""The dashboard's data layer on stores filled by the real study loop (synthetic objective), on both databases:
what it reads is what `autopeft pareto`, `study show` and `study list` print, through a read-only store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.dashboard.data import list_studies, load_study, open_read_only, study_version
from autopeft.dashboard.views import StudyView
from autopeft.engine.front import study_front
from autopeft.engine.loop import budget_spent
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.search.rungs import rung_levels
from autopeft.status import AttemptOutcome
from autopeft.store import Lease, NotFoundError, Store, StoreError, TrialStatus
from tests.engine.synthetic import MAX_F, synthetic_runner
from tests.engine.test_loop import _loop, _study

runner = CliRunner()


def _cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def filled(store_url: str) -> Iterator[str]:
    """A finished Hyperband study `hb` and a finished full-fidelity study `rand`."""
    store = Store(store_url)
    _loop(store, "hb", _study(store, "hb")).run()
    _loop(store, "rand", _study(store, "rand", strategy="random"), budget=4, strategy="random").run()
    store.close()
    yield store_url


@pytest.mark.parametrize("name", ["hb", "rand"])
def test_the_study_page_reads_what_the_cli_prints(filled: str, name: str) -> None:
    writer, reader = Store(filled), open_read_only(filled)
    view = load_study(reader, name)

    # The front: exactly `study_front`, so exactly the trials `autopeft pareto --format json` prints, in its order.
    assert view.front == study_front(writer, name)
    pareto = _cli("pareto", name, "--storage", filled, "--format", "json")
    assert [e.number for e in view.front.entries] == [row["trial"] for row in pareto]
    assert {t.number for t in view.trials if t.on_front} == {row["trial"] for row in pareto}

    # Counts and budget: `study show --json`.
    show = _cli("study", "show", name, "--storage", filled, "--json")
    counts: dict[str, int] = {}
    for trial in view.trials:
        counts[trial.status.value] = counts.get(trial.status.value, 0) + 1
    assert {s: n for s, n in show["counts"].items() if n} == counts
    assert view.budget_used == show["budget_used"]
    assert view.front.hypervolume == pytest.approx(show["hypervolume"])

    # Trials, results and attempts: every row of the store, each trial at the highest fidelity it reported.
    assert [t.number for t in view.trials] == [t.number for t in writer.trials(name)]
    results = writer.results(name)
    assert [(r.trial_number, r.fidelity, r.objectives, r.metrics) for r in view.results] == [
        (r.trial_number, r.fidelity, r.objectives, r.metrics) for r in results]
    for trial in view.trials:
        mine = [r for r in results if r.trial_number == trial.number]
        assert trial.fidelity == (mine[-1].fidelity if mine else None)
        assert trial.objectives == (mine[-1].objectives if mine else {})
    assert [(a.trial_number, a.number, a.outcome) for a in view.attempts] == [
        (a.trial_number, a.number, a.outcome) for a in writer.attempts(name)]

    # Snapshots: the stored ones, with the budget the results stored by then had spent.
    stored = writer.pareto_snapshots(name)
    numbers = {t.id: t.number for t in writer.trials(name)}
    assert [(s.hypervolume, s.trial_numbers) for s in view.snapshots] == [
        (s.hypervolume, tuple(sorted(numbers[i] for i in s.trial_ids))) for s in stored]
    assert view.snapshots[-1].hypervolume == pytest.approx(view.front.hypervolume)
    for point in view.snapshots:
        assert point.budget_used == budget_spent([r for r in results if r.created_at <= point.created_at], MAX_F)
        assert point.seconds >= 0
    assert [s.budget_used for s in view.snapshots] == sorted(s.budget_used for s in view.snapshots)

    assert view.rungs == (tuple(rung_levels(1, MAX_F, 3)) if name == "hb" else (MAX_F,))
    assert view.base_params == 2_000_000 and view.max_fidelity == MAX_F
    assert view.version == study_version(reader, name)
    writer.close()
    reader.close()


def test_the_study_pages_light_view_differs_only_in_what_it_leaves_out(filled: str) -> None:
    """Without detail (the study page): the same trials, front, snapshots and budget; metrics only at full
    fidelity, attempts only running ones (none in a finished study)."""
    reader = open_read_only(filled)
    full, light = load_study(reader, "hb"), load_study(reader, "hb", detail=False)
    assert (full.detail, light.detail) == (True, False)
    assert light.trials == full.trials and light.front == full.front and light.snapshots == full.snapshots
    assert light.budget_used == full.budget_used and light.version == full.version
    assert [(r.trial_number, r.fidelity, r.objectives) for r in light.results] == \
        [(r.trial_number, r.fidelity, r.objectives) for r in full.results]
    for a, b in zip(light.results, full.results, strict=True):
        assert a.metrics == (b.metrics if a.fidelity == full.max_fidelity else {})
    assert any(r.metrics for r in full.results if r.fidelity < full.max_fidelity)  # so the check above bites
    assert full.attempts and light.attempts == ()


def test_the_studies_page_reads_what_study_list_and_show_print(filled: str) -> None:
    reader = open_read_only(filled)
    rows = {row.name: row for row in list_studies(reader)}
    listed = {row["name"]: row for row in _cli("study", "list", "--storage", filled, "--json")}
    assert list(rows) == list(listed) == ["hb", "rand"]
    for name, row in rows.items():
        show = _cli("study", "show", name, "--storage", filled, "--json")
        assert row.counts == show["counts"]
        assert row.budget_used == show["budget_used"]
        assert row.best_score == listed[name]["best_score"]
        assert row.hypervolume == pytest.approx(listed[name]["hypervolume"])
        assert (row.status, row.strategy, row.objectives) == (show["status"], show["strategy"],
                                                              ("score", "trainable_params"))
        assert row.created_at.isoformat() == show["created"] and row.last_activity >= row.created_at
        assert row.budget_total is None  # the engine tests' studies store no budget option
    reader.close()


def test_a_running_study_changes_version_with_every_result(store_url: str) -> None:
    """Read from inside the runner (the driver holds the study, a job is training): every job sees a new version,
    the view shows the trial as running towards its fidelity, and the results only grow."""
    store = Store(store_url)
    definition = _study(store, "live")
    reader = open_read_only(store_url)
    seen: list[tuple[Any, ...]] = []
    sizes: list[int] = []

    def watching(task: TrialTask) -> TrialOutcome:
        if len(seen) > 200:  # a check below failing makes every job fail, and failed jobs spend no budget
            raise KeyboardInterrupt
        seen.append(study_version(reader, "live"))
        view = load_study(reader, "live")
        assert view.version == seen[-1] and view.status == "running"
        trial = view.trial(task.number)
        assert trial is not None and trial.status is TrialStatus.RUNNING and trial.training_to == task.fidelity
        assert view.attempts[-1].outcome is AttemptOutcome.RUNNING or any(
            a.outcome is AttemptOutcome.RUNNING for a in view.attempts)
        sizes.append(len(view.results))
        return synthetic_runner(task)

    _loop(store, "live", definition, budget=3, runner=watching).run()
    final = study_version(reader, "live")
    assert len(seen) >= 5 and len(set(seen)) == len(seen) and final not in seen
    assert sizes == sorted(sizes) and sizes[-1] < len(load_study(reader, "live").results)
    assert load_study(reader, "live").status == "complete"
    store.close()
    reader.close()


def test_a_version_changes_with_every_kind_of_write(store_url: str) -> None:
    store = Store(store_url)
    _study(store, "v")
    reader = open_read_only(store_url)
    versions = [study_version(reader, "v")]

    def changed() -> None:
        versions.append(study_version(reader, "v"))
        assert versions[-1] != versions[-2]

    trial = store.create_trial("v", {"x": 0.5, "y": 0.5}, {"plan": {}})
    changed()
    attempt = store.start_attempt(trial.id, 1)
    changed()
    store.record_result(trial.id, 1, {"score": 0.4, "trainable_params": 5e5})
    changed()
    store.end_attempt(attempt.id, AttemptOutcome.REPORTED)
    changed()
    store.set_trial_status(trial.id, TrialStatus.PAUSED)
    changed()
    store.set_trial_status(trial.id, TrialStatus.PRUNED)
    changed()
    store.add_pareto_snapshot("v", [], None)
    changed()
    lease = Lease.for_this_process()
    store.acquire_lease("v", lease, ttl=30)
    changed()
    view = load_study(reader, "v")
    assert view.driver == str(lease) and view.driver_heartbeat is not None
    assert store.renew_lease("v", lease.owner)
    changed()  # the driver's heartbeat: the page shows it is alive
    store.set_study_status("v", "complete")
    changed()
    assert study_version(reader, "v") == versions[-1]  # and nothing else moves it
    store.close()
    reader.close()


def test_no_full_fidelity_result_yet_loads_with_an_empty_front(store_url: str) -> None:
    store = Store(store_url)
    _study(store, "early")
    trial = store.create_trial("early", {"x": 0.5, "y": 0.5}, {"plan": {}})
    store.start_attempt(trial.id, 1)
    store.record_result(trial.id, 1, {"score": 0.4, "trainable_params": 5e5}, {"trainable_share": 0.25})
    store.set_trial_status(trial.id, TrialStatus.PAUSED)
    reader = open_read_only(store_url)
    view = load_study(reader, "early")
    assert view.front.entries == () and view.front.completed == () and view.front.hypervolume is None
    assert view.snapshots == () and view.budget_used == pytest.approx(1 / MAX_F)
    assert [(t.number, t.fidelity, t.on_front) for t in view.trials] == [(0, 1, False)]
    (row,) = list_studies(reader)
    assert row.best_score is None and row.hypervolume is None and row.counts["paused"] == 1
    assert row.budget_used == pytest.approx(1 / MAX_F)
    store.close()


def test_an_empty_store_lists_nothing(store_url: str) -> None:
    Store(store_url).create_all()
    assert list_studies(open_read_only(store_url)) == []


def test_errors_are_the_stores_one_line_errors(filled: str, tmp_path: Any) -> None:
    reader = open_read_only(filled)
    with pytest.raises(NotFoundError, match=r"no study named 'nope'.*studies: hb, rand"):
        load_study(reader, "nope")
    with pytest.raises(NotFoundError):
        study_version(reader, "nope")
    with pytest.raises(StoreError, match="no store at"):
        open_read_only(f"sqlite:///{tmp_path / 'missing.db'}")
    with pytest.raises(StoreError) as bad:
        open_read_only("postgresql+psycopg://nobody@/db?port=notaport&host=/nonexistent").study_overviews()
    assert "\n" not in str(bad.value)
    with pytest.raises(StoreError) as unreachable:
        list_studies(open_read_only("postgresql+psycopg://nobody@127.0.0.1:1/db?connect_timeout=2"))
    assert "\n" not in str(unreachable.value)
    with pytest.raises(StoreError, match="cannot open store"):
        open_read_only("not a url")


def test_views_pickle(filled: str) -> None:
    """The app caches views (`st.cache_data` pickles them)."""
    import pickle

    view: StudyView = load_study(open_read_only(filled), "hb")
    assert pickle.loads(pickle.dumps(view)) == view


def test_reading_the_dashboards_data_imports_no_torch_and_nothing_that_trains() -> None:
    # The executors' thread and device rules (autopeft.train.resources: os and a regex, no torch) and where
    # trial folders live (autopeft.train.storage: paths and URIs, fsspec only when one is used) come along
    # with the engine's loop; nothing else of autopeft.train may.
    code = ("import sys, autopeft.dashboard.data, autopeft.dashboard.views\n"
            "light = {'autopeft.train', 'autopeft.train.resources', 'autopeft.train.storage'}\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'autopeft.train'))\n"
            "             and m not in light)\n"
            "bad += [m for m in ('autopeft.engine.worker', 'autopeft.engine.study') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""
