"""The dashboard's figures and tables, on study views built by hand from a real space (no store, no browser)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("plotly")
pytest.importorskip("pandas")

from autopeft.dashboard import charts
from autopeft.dashboard.views import ResultPoint, SnapshotPoint, StudyView, TrialView
from autopeft.engine.definition import StudyDefinition, make_objectives
from autopeft.engine.front import FrontEntry, compute_front
from autopeft.space import SearchSpace
from autopeft.space.plan_text import ROLE_LETTERS
from autopeft.status import TrialStatus

SPACE: dict[str, Any] = {
    "name": "charts",
    "training": {"learning_rate": {"float": [1e-4, 1e-2], "log": True}},
    "searched_layers": "all",
    "layers": {"method": {"choices": ["none", "lora", "parallel_adapter", "prefix"]},
               "rank": {"int": [1, 16], "when": {"method": ["lora"]}},
               "size": {"choices": [16, 64], "when": {"method": ["parallel_adapter"]}}},
    "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}},
             {"method": "parallel_adapter", "size": "$size", "when": {"method": ["parallel_adapter"]}},
             {"method": "prefix", "length": 8, "when": {"method": ["prefix"]}}],
}
LAYERS, RUNGS, BASE = 3, (1, 3, 9), 1_000_000.0
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: Status of each trial by number, and the fidelity it stopped at.
PATTERN = [(TrialStatus.COMPLETE, 9), (TrialStatus.PRUNED, 1), (TrialStatus.COMPLETE, 9), (TrialStatus.PRUNED, 3),
           (TrialStatus.PAUSED, 3), (TrialStatus.FAILED, 1), (TrialStatus.RUNNING, 1), (TrialStatus.COMPLETE, 9)]


def _values(config: dict[str, Any], fidelity: int) -> dict[str, float]:
    params = 770.0
    score = 0.5 + 0.02 * math.log10(config["learning_rate"] * 1e4)
    for i in range(LAYERS):
        method = config[f"layer_{i}.method"]
        params += {"lora": 128.0 * config.get(f"layer_{i}.rank", 0), "parallel_adapter": 64.0 * config.get(
            f"layer_{i}.size", 0), "prefix": 512.0}.get(method, 0.0)
        score += {"none": 0.0, "lora": 0.01 * config.get(f"layer_{i}.rank", 0), "parallel_adapter": 0.05,
                  "prefix": 0.02}[method]
    return {"score": score * fidelity / (fidelity + 1), "trainable_params": params}


def make_view(n: int = 24, *, seed: int = 0, name: str = "s",
              objectives: tuple[str, ...] = ("score", "trainable_params"), base: float = BASE) -> StudyView:
    """A study of ``n`` trials from SPACE: the PATTERN's statuses in turn, results at every rung reached."""
    space = SearchSpace.model_validate(SPACE)
    objs = make_objectives(objectives, base_params=int(base))
    definition = StudyDefinition(space=SPACE, recipe={"fidelity": {"min": 1, "max": 9}}, objectives=objs,
                                 recipe_dir=".")
    rng = random.Random(seed)
    trials, results, completed, snapshots = [], [], [], []
    for number in range(n):
        status, reached = PATTERN[number % len(PATTERN)]
        config = space.sample(LAYERS, rng)
        plan = space.compile(config, LAYERS).model_dump(exclude_none=True)
        levels = [f for f in RUNGS if f <= reached] if status is not TrialStatus.FAILED or number % 2 else []
        values: dict[str, float] = {}
        for f in levels:
            values = {**_values(config, f), "train_seconds": 10.0 * f + number, "peak_memory_mb": 100.0 + number}
            values = {k: v for k, v in values.items() if k in objectives}
            results.append(ResultPoint(number, f, values, {}, T0 + timedelta(seconds=10 * number + f)))
        if status is TrialStatus.COMPLETE:
            completed.append(FrontEntry(number, number, config, plan, values, {}, 9))
            front = compute_front(objs, completed)
            snapshots.append(SnapshotPoint(T0 + timedelta(seconds=10 * number), front.hypervolume,
                                           tuple(e.number for e in front.entries), number / 3, 10.0 * number))
        trials.append(TrialView(number, number, status, config, plan, None, "w1", "boom" if status is
                                TrialStatus.FAILED else None, T0, T0, T0, levels[-1] if levels else None, values,
                                False))
    front = compute_front(objs, completed)
    on = {e.number for e in front.entries}
    trials = [TrialView(**{**t.__dict__, "on_front": t.number in on}) for t in trials]
    return StudyView(name, "running", "hyperband", definition, tuple(trials), tuple(results), tuple(snapshots), (),
                     front, RUNGS, base, 10.0, n / 3)


def empty_view() -> StudyView:
    view = make_view(0)
    assert not view.trials and not view.front.completed
    return view


def _customdata(trace: Any) -> list[int]:
    return [int(c) for c in _plain(trace.customdata) if c is not None]


def _plain(values: Any) -> list[Any]:
    """A trace's values as a list, NaN (how the charts mark a gap in NumPy arrays) as None."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


# -- the front ------------------------------------------------------------------------------------------
def test_front_trace_holds_exactly_the_front_and_dominated_trials_apart() -> None:
    view = make_view()
    fig = charts.front_figure(view)
    traces = {t.name: t for t in fig.data if t.name}
    front, dominated = traces["Pareto front"], traces["dominated"]
    assert sorted(_customdata(front)) == sorted(e.number for e in view.front.entries)
    everything = {e.number for e in view.front.completed}
    assert set(_customdata(dominated)) == everything - set(_customdata(front))
    assert front.line.shape == "hv" and list(front.x) == sorted(front.x)  # a step line, by parameters
    assert dominated.marker.opacity < 1
    assert not any("stopped early" in (t.name or "") for t in fig.data)  # pruned trials are off by default
    assert "share of the model" in front.hovertext[0] and "trial " in front.hovertext[0]
    assert fig.layout.xaxis2.ticktext and fig.layout.xaxis2.matches == "x"  # % of the model on the top axis


def test_front_shows_stopped_trials_apart_when_asked_and_takes_a_log_axis() -> None:
    view = make_view()
    fig = charts.front_figure(view, show_pruned=True, log_x=True)
    stopped = [t for t in fig.data if "stopped early" in (t.name or "")]
    expected = {t.number for t in view.trials if t.status in (TrialStatus.PRUNED, TrialStatus.PAUSED)}
    assert {n for t in stopped for n in _customdata(t)} == expected
    assert {t.name for t in stopped} == {"stopped early (score at fidelity 1)", "stopped early (score at fidelity 3)"}
    assert all(t.marker.symbol == "x" for t in stopped)
    assert fig.layout.xaxis.type == "log"


def test_three_objectives_give_a_3d_front_and_every_projection() -> None:
    view = make_view(objectives=("score", "trainable_params", "train_seconds"))
    fig = charts.front_3d_figure(view)
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert sorted(_customdata(front)) == sorted(e.number for e in view.front.entries)
    figures = charts.projections(view)
    assert len(figures) == 3
    assert [(f.layout.xaxis.title.text, f.layout.yaxis.title.text) for f in figures] == [
        ("trainable parameters", "score"), ("training seconds", "score"),
        ("trainable parameters", "training seconds")]
    assert all(t.mode == "markers" for f in figures for t in f.data if t.name == "Pareto front")  # no staircase


# -- hypervolume, learning curves -------------------------------------------------------------------------
@pytest.mark.parametrize("x", ["budget", "seconds"])
def test_hypervolume_figure_plots_the_snapshots(x: str) -> None:
    view = make_view()
    (trace,) = charts.hypervolume_figure(view, x=x).data
    assert list(trace.y) == [s.hypervolume for s in view.snapshots]
    assert list(trace.x) == [s.budget_used if x == "budget" else s.seconds for s in view.snapshots]
    assert trace.line.shape == "hv"


def test_learning_curves_one_segment_per_trial_coloured_by_status() -> None:
    view = make_view()
    fig = charts.learning_curves_figure(view)
    traces = {t.name: t for t in fig.data}
    kind = {TrialStatus.COMPLETE: "complete", TrialStatus.PRUNED: "pruned", TrialStatus.PAUSED: "paused",
            TrialStatus.FAILED: "failed", TrialStatus.RUNNING: "running", TrialStatus.WAITING: "running"}
    with_results = {r.trial_number for r in view.results}
    for name in ("complete", "pruned", "paused", "failed", "running"):
        trace = traces[name]
        assert trace.line.color == trace.marker.color == charts.CURVE_COLOURS[name]
        numbers = _plain(trace.customdata)
        segments = [n for n, nxt in zip(numbers, [*numbers[1:], None], strict=True)
                    if n is not None and nxt is None]
        expected = sorted(t.number for t in view.trials if kind[t.status] == name and t.number in with_results)
        assert segments == expected  # one gap-separated segment per trial
        points = [c for c in numbers if c is not None]
        assert points == [r.trial_number for r in view.results if r.trial_number in expected]
    promoted = traces["promoted from this rung"]
    reached = {t.number: t.fidelity for t in view.trials}
    expected_promotions = [(r.trial_number, r.fidelity) for r in view.results if r.fidelity < reached[r.trial_number]]
    assert sorted(zip(_plain(promoted.customdata), promoted.x, strict=True)) == sorted(expected_promotions)
    rungs = traces["rungs"]
    assert {x for x in rungs.x if x is not None} == set(view.rungs)


# -- where the adapters go ---------------------------------------------------------------------------------
PLANS = [
    {"plan": {"0": [{"method": "lora", "r": 8, "roles": ["query", "value"]}],
              "1": [{"method": "parallel_adapter", "size": 16}]}, "learning_rate": 0.001},
    {"0-1": [{"method": "lora", "r": 4}, {"method": "prefix", "length": 8}]},
    {"2": [{"method": "serial_adapter", "size": 32, "placement": "houlsby"}, {"method": "ia3"}]},
]


def test_plan_grid_counts_each_method_per_layer_and_role() -> None:
    grid = charts.plan_grid(PLANS, num_layers=4)
    assert list(grid.index) == [0, 1, 2, 3]
    assert grid.loc[0, "query"] == "lora ×2" and grid.loc[0, "value"] == "lora ×2"
    assert grid.loc[1, "query"] == "lora ×1" and grid.loc[1, "feed-forward (block)"] == "parallel_adapter ×1"
    assert grid.loc[0, "attention (block)"] == grid.loc[1, "attention (block)"] == "prefix ×1"
    assert grid.loc[2, "attention (block)"] == "serial_adapter ×1"  # houlsby: after attention and feed-forward
    assert grid.loc[2, "feed-forward (block)"] == "serial_adapter ×1"
    assert grid.loc[2, "key"] == grid.loc[2, "ff_down"] == "ia3 ×1"  # its default roles: key, value, ff_down
    assert (grid.loc[3] == "").all()
    assert list(grid.columns) == [c for c in charts.plan_grid(PLANS, drop_empty=False).columns if c in grid.columns]
    assert "ff_gate" not in grid.columns and set(ROLE_LETTERS) <= set(charts.plan_grid([], drop_empty=False).columns)


def test_trial_plan_grid_shows_sizes_and_the_front_heatmap_counts_front_trials() -> None:
    grid = charts.trial_plan_grid(PLANS[1])
    assert list(grid.index) == [0, 1]
    assert grid.loc[1, "query"] == "lora r=4" and grid.loc[0, "attention (block)"] == "prefix length=8"
    view = make_view()
    fig = charts.plan_grid_figure(view)
    (heat,) = fig.data
    assert heat.zmax == len(view.front.entries)
    counted = charts.plan_grid([e.plan for e in view.front.entries], num_layers=LAYERS)
    assert list(heat.x) == list(counted.columns) and len(heat.y) == LAYERS


# -- parameters ----------------------------------------------------------------------------------------
def test_parameters_figure_has_an_axis_per_searched_parameter() -> None:
    view = make_view()
    (par,) = charts.parameters_figure(view).data
    labels = [d.label for d in par.dimensions]
    dims = SearchSpace.model_validate(SPACE).dimensions(LAYERS)
    assert [label.removesuffix(" (log)") for label in labels] == [n for n in dims if any(
        n in t.config for t in view.trials if t.full)]
    method = next(d for d in par.dimensions if d.label == "layer_0.method")
    assert list(method.ticktext) == ["none", "lora", "parallel_adapter", "prefix"]
    size = next(d for d in par.dimensions if d.label == "layer_0.size")  # conditional: "–" where it is absent
    configs = [t.config for t in view.trials if t.full]
    assert list(size.ticktext) == ["–", "16", "64"]
    assert list(size.values) == [{None: 0, 16: 1, 64: 2}[c.get("layer_0.size")] for c in configs]
    rank = next(d for d in par.dimensions if d.label == "layer_0.rank")
    assert rank.ticktext[0] == "–" and min(rank.values) == rank.range[0] == rank.tickvals[0] < 1
    assert len(par.line.color) == len([t for t in view.trials if t.full])


def test_importance_has_a_row_per_searched_parameter() -> None:
    view = make_view(60)
    frame = charts.parameter_importance(view)
    dims = SearchSpace.model_validate(SPACE).dimensions(LAYERS)
    assert sorted(frame["parameter"]) == sorted(dims)
    measured = frame[frame["note"] == ""]
    assert set(measured["parameter"]) == {"learning_rate", *(f"layer_{i}.method" for i in range(LAYERS))}
    assert measured["importance"].sum() == pytest.approx(1.0)
    assert frame[frame["note"] != ""]["importance"].isna().all()
    few = charts.parameter_importance(make_view(8))
    assert few.empty and "complete trials" in few.attrs["reason"]


# -- tables and comparison -------------------------------------------------------------------------------
def test_trials_frame_has_a_row_per_trial() -> None:
    view = make_view()
    frame = charts.trials_frame(view)
    assert list(frame["number"]) == [t.number for t in view.trials]
    assert list(frame.columns[:5]) == ["number", "status", "fidelity", "score", "trainable_params"]
    row = frame.iloc[0]
    assert row["share_pct"] == pytest.approx(100 * row["trainable_params"] / BASE)
    assert frame[frame["status"] == "failed"]["error"].eq("boom").all()


def test_plan_lines_are_kept_between_versions_by_the_table_and_the_hover_texts() -> None:
    """A line already written (by trial id) is read back, a missing one is written and kept: a study's next
    version writes only its new trials' lines, for the trials table and the front's hover texts alike."""
    fresh = make_view()
    first, *rest = fresh.trials
    lines = {first.id: "kept"}
    view = dataclasses.replace(fresh, plan_lines=lines)
    frame = charts.trials_frame(view)
    assert frame.iloc[0]["plan"] == "kept"
    assert set(lines) == {t.id for t in view.trials}
    assert [lines[t.id] for t in rest] == list(charts.trials_frame(fresh)["plan"])[1:]
    entry = view.front.completed[0]
    lines[entry.trial_id] = "from an earlier version"
    hover = next(t for t in charts.front_figure(view).data if entry.number in _customdata(t))
    assert any(str(text).endswith("<br>from an earlier version") for text in hover.hovertext)


def test_compare_overlays_fronts_and_histories_from_one_reference() -> None:
    a, b = make_view(name="a"), make_view(seed=1, name="b")
    fronts, volumes, summary = charts.compare_figures([a, b])
    assert [t.name for t in fronts.data] == ["a", "b"]
    assert sorted(_customdata(fronts.data[1])) == sorted(e.number for e in b.front.entries)
    assert list(volumes.data[0].y) == [s.hypervolume for s in a.snapshots]  # same recipe: the stored values
    assert list(summary["final hypervolume"]) == [a.snapshots[-1].hypervolume, b.snapshots[-1].hypervolume]
    # A different base model: one common reference (the larger), so b is measured again and gains volume.
    assert fronts.layout.xaxis.title.text == "trainable parameters"
    c = make_view(seed=1, name="c", base=2 * BASE)
    fronts, volumes, summary = charts.compare_figures([a, c])
    assert all(again > stored for again, stored in zip(volumes.data[0].y, [s.hypervolume for s in a.snapshots],
                                                       strict=True))  # a measured again from 2M parameters
    assert summary["final hypervolume"][1] == pytest.approx(c.snapshots[-1].hypervolume)
    assert fronts.layout.xaxis.title.text == "share of the model (%)"


# -- nothing to draw -------------------------------------------------------------------------------------
def test_every_function_takes_an_empty_study() -> None:
    view = empty_view()
    for fig in (charts.front_figure(view), charts.front_figure(view, show_pruned=True, log_x=True),
                charts.front_3d_figure(view), charts.hypervolume_figure(view), charts.learning_curves_figure(view),
                charts.plan_grid_figure(view), charts.parameters_figure(view), *charts.projections(view)):
        assert fig.layout.annotations and not fig.data
    assert charts.plan_grid([]).empty and charts.trial_plan_grid(None).empty
    assert charts.parameter_importance(view).attrs["reason"]
    assert charts.trials_frame(view).empty
    _, _, summary = charts.compare_figures([view, view])
    assert len(summary) == 2 and summary["final hypervolume"].isna().all()
    charts.compare_figures([])


def test_a_study_with_results_but_nothing_at_full_fidelity() -> None:
    view = make_view(2)  # a complete trial, and one pruned at the first rung
    view = StudyView(**{**view.__dict__, "trials": view.trials[1:], "results": view.results[3:],
                        "front": compute_front(view.front.objectives, []), "snapshots": ()})
    assert charts.front_figure(view).layout.annotations
    stopped = charts.front_figure(view, show_pruned=True).data
    shown = [(t.name, _customdata(t)) for t in stopped if t.customdata is not None and len(t.customdata)]
    assert shown == [("stopped early (score at fidelity 1)", [1])]
    assert charts.learning_curves_figure(view).data
    assert charts.plan_grid_figure(view).layout.annotations
