"""The study page's figures and tables, from `autopeft.dashboard.views` (plotly and pandas; no Streamlit).

Every point a page can click carries its trial number in ``customdata`` (one number per point), so the
app opens a trial from a click or a box selection without a lookup. Every function takes a study with
no trials, or none at full fidelity, and returns an empty figure with the reason written on it, or an
empty frame. Plans, placement grids, parameters and their importance are in `search_charts`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from autopeft.dashboard.rows import share_pct, trial_columns, trial_rows
from autopeft.dashboard.search_charts import (
    empty_figure,
    nice_ticks,
    parameter_importance,
    parameters_figure,
    plan_grid,
    plan_grid_figure,
    trial_plan_grid,
)
from autopeft.dashboard.views import StudyView, TrialView
from autopeft.engine.definition import SCORE, TRAINABLE_PARAMS
from autopeft.engine.front import FrontEntry
from autopeft.search.pareto import Direction, Objective, hypervolume, reference_point, to_minimization
from autopeft.status import TrialStatus

__all__ = [
    "CURVE_COLOURS", "compare_figures", "front_3d_figure", "front_figure", "hypervolume_figure",
    "learning_curves_figure", "parameter_importance", "parameters_figure", "plan_grid", "plan_grid_figure",
    "projections", "trial_plan_grid", "trials_frame",
]

#: Learning-curve colours by what the scheduler did: a promotion marker, then a trial's line by its status.
CURVE_COLOURS = {"promoted": "#1f77b4", "complete": "#2ca02c", "paused": "#ff7f0e", "pruned": "#d62728",
                 "failed": "#7f7f7f", "running": "#9467bd"}
_LABELS = {SCORE: "score", TRAINABLE_PARAMS: "trainable parameters", "train_seconds": "training seconds",
           "peak_memory_mb": "peak memory (MB)"}
_FRONT_COLOUR, _DOMINATED_COLOUR, _STOPPED_COLOUR = "#1f77b4", "#9aa5b1", "#ff7f0e"
_GL_ABOVE = 5000  # points: WebGL beyond this, SVG below (browsers cap WebGL contexts per page)


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def _array(values: Iterable[float | int | None]) -> np.ndarray:
    """Floats for plotly, None as NaN (a gap in a line). Plotly checks a Python list element by element
    (seconds for the 40,000 results of a large study) and takes a NumPy array as it is."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _numbers(numbers: Sequence[int], most: int = 12) -> str:
    """Trial numbers for a hover line: a long front's would not fit (nor be read), so the first few and a count."""
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def _texts(values: Iterable[str]) -> np.ndarray:
    """Hover texts as one array, for the same reason as `_array`."""
    return np.array(list(values), dtype=object)


def _scatter(n: int, **kwargs: Any) -> go.Scatter | go.Scattergl:
    return go.Scattergl(**kwargs) if n > _GL_ABOVE else go.Scatter(**kwargs)


def _hover(trial_id: int, number: int, values: Mapping[str, float], view: StudyView,
           plan: Mapping[str, Any] | None, fidelity: int | None = None) -> str:
    lines = [f"trial {number}" + (f" (at fidelity {fidelity:,})" if fidelity is not None else "")]
    for objective in view.definition.objectives:
        value = values.get(objective.name)
        if value is not None:
            lines.append(f"{_label(objective.name)}: {value:,.0f}" if objective.name == TRAINABLE_PARAMS
                         else f"{_label(objective.name)}: {value:.4g}")
    share = share_pct(values, view.base_params)
    if share is not None:
        lines.append(f"share of the model: {share:.3f}%")
    lines.append(view.plan_line(trial_id, plan))
    return "<br>".join(lines)


def _points(view: StudyView, entries: Iterable[FrontEntry], x: str, y: str) -> list[FrontEntry]:
    return [e for e in entries if x in e.objectives and y in e.objectives]


def _stopped(view: StudyView, x: str, y: str) -> list[TrialView]:
    """Pruned and paused trials with values below full fidelity."""
    return [t for t in view.trials if t.status in (TrialStatus.PRUNED, TrialStatus.PAUSED)
            and t.fidelity is not None and t.fidelity < view.max_fidelity and x in t.objectives and y in t.objectives]


def _share_axis(fig: go.Figure, params: Sequence[float], base_params: float, log_x: bool) -> None:
    """A top x axis in % of the model, locked to the parameter axis (its ticks sit on the same values)."""
    positive = [p for p in params if p > 0]
    if not positive or base_params <= 0:
        return
    lo, hi = min(positive) / base_params * 100, max(positive) / base_params * 100
    if not log_x:  # plotly pads a linear axis; a log one barely
        lo, hi = max(0.0, lo - 0.1 * (hi - lo or lo)), hi + 0.1 * (hi - lo or hi)
    ticks = nice_ticks(lo, hi, log_x)
    fig.add_trace(go.Scatter(x=[min(positive), max(positive)], y=[None, None], xaxis="x2", showlegend=False,
                             hoverinfo="skip", mode="markers"))
    fig.update_layout(xaxis2={"overlaying": "x", "side": "top", "matches": "x", "type": "log" if log_x else "linear",
                              "tickvals": [t * base_params / 100 for t in ticks],
                              "ticktext": [f"{t:g}%" for t in ticks], "title": {"text": "share of the model"},
                              "showgrid": False})


def front_figure(view: StudyView, *, log_x: bool = False, show_pruned: bool = False, x: str = TRAINABLE_PARAMS,
                 y: str = SCORE) -> go.Figure:
    """Full-fidelity trials, ``y`` against ``x``: the front as a step line, dominated trials faded.

    A step (``hv``) line because between two front trials the best attainable value stays that of the
    cheaper one: the line is the front's attainment boundary, not an interpolation. It is drawn only when
    ``x`` and ``y`` are the study's two objectives; in a projection of three the front is not a staircase.
    Pruned and paused trials are comparable to nothing at full fidelity, so they are off by default and,
    when shown, drawn with another marker per fidelity.
    """
    completed = _points(view, view.front.completed, x, y)
    stopped = _stopped(view, x, y) if show_pruned else []
    if not completed and not stopped:
        return empty_figure("no trial has reached full fidelity yet")
    on_front = {e.number for e in view.front.entries}
    front = sorted((e for e in completed if e.number in on_front), key=lambda e: (e.objectives[x], e.number))
    dominated = [e for e in completed if e.number not in on_front]
    step = {x, y} == {o.name for o in view.definition.objectives}
    fig = go.Figure()
    for name, entries, style in (
        ("dominated", dominated, {"marker": {"color": _DOMINATED_COLOUR, "opacity": 0.45}, "mode": "markers"}),
        ("Pareto front", front, {"marker": {"color": _FRONT_COLOUR, "size": 9},
                                 "mode": "lines+markers" if step else "markers",
                                 "line": {"shape": "hv", "color": _FRONT_COLOUR}}),
    ):
        fig.add_trace(_scatter(len(entries), name=name, x=_array(e.objectives[x] for e in entries),
                               y=_array(e.objectives[y] for e in entries), customdata=_array(e.number for e in entries),
                               hovertext=_texts(_hover(e.trial_id, e.number, e.objectives, view, e.plan)
                                                for e in entries),
                               hovertemplate="%{hovertext}<extra></extra>", **style))
    for fidelity, group in itertools.groupby(sorted(stopped, key=lambda t: (t.fidelity, t.number)),
                                             key=lambda t: t.fidelity):
        trials = list(group)
        fig.add_trace(_scatter(len(trials), name=f"stopped early ({_label(y)} at fidelity {fidelity:,})",
                               mode="markers", marker={"symbol": "x", "color": _STOPPED_COLOUR, "opacity": 0.6},
                               x=_array(t.objectives[x] for t in trials), y=_array(t.objectives[y] for t in trials),
                               customdata=_array(t.number for t in trials),
                               hovertext=_texts(_hover(t.id, t.number, t.objectives, view, t.plan, t.fidelity)
                                                for t in trials),
                               hovertemplate="%{hovertext}<extra></extra>"))
    # No clickmode or dragmode here: Streamlit sets them for its selections, and a figure that forces
    # dragmode "select" loses single-click selection (Streamlit then sets clickmode "event"). A click opens
    # one trial; the toolbar's box and lasso select several.
    fig.update_layout(xaxis={"title": {"text": _label(x)}, "type": "log" if log_x else "linear"},
                      yaxis={"title": {"text": _label(y)}}, legend={"orientation": "h", "y": -0.2}, margin={"t": 60})
    if x == TRAINABLE_PARAMS:
        xs = [e.objectives[x] for e in completed] + [t.objectives[x] for t in stopped]
        _share_axis(fig, xs, view.base_params, log_x)
    return fig


def front_3d_figure(view: StudyView) -> go.Figure:
    """The first three objectives in 3-D: front trials solid, dominated ones faded (a front of three
    objectives is a surface, which no 2-D plot shows whole)."""
    names = [o.name for o in view.definition.objectives]
    if len(names) < 3:
        return empty_figure("a 3-D front needs three objectives")
    a, b, c = names[:3]
    completed = [e for e in view.front.completed if all(n in e.objectives for n in (a, b, c))]
    if not completed:
        return empty_figure("no trial has reached full fidelity yet")
    on_front = {e.number for e in view.front.entries}
    fig = go.Figure()
    for name, entries, marker in (
        ("dominated", [e for e in completed if e.number not in on_front], {"color": _DOMINATED_COLOUR, "opacity": 0.4}),
        ("Pareto front", [e for e in completed if e.number in on_front], {"color": _FRONT_COLOUR}),
    ):
        fig.add_trace(go.Scatter3d(name=name, mode="markers", marker={"size": 4, **marker},
                                   x=[e.objectives[a] for e in entries], y=[e.objectives[b] for e in entries],
                                   z=[e.objectives[c] for e in entries], customdata=[e.number for e in entries],
                                   hovertext=[_hover(e.trial_id, e.number, e.objectives, view, e.plan)
                                              for e in entries],
                                   hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_layout(scene={"xaxis": {"title": {"text": _label(a)}}, "yaxis": {"title": {"text": _label(b)}},
                             "zaxis": {"title": {"text": _label(c)}}}, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    return fig


def projections(view: StudyView) -> list[go.Figure]:
    """`front_figure` for each pair of objectives (score on the y axis where it is one of the pair)."""
    names = [o.name for o in view.definition.objectives]
    out = []
    for a, b in itertools.combinations(names, 2):
        x, y = (b, a) if a == SCORE else (a, b)
        out.append(front_figure(view, x=x, y=y))
    return out


def hypervolume_figure(view: StudyView, *, x: str = "budget") -> go.Figure:
    """The stored snapshots' hypervolume against budget spent (full-trial equivalents) or wall time.

    A step line: the hypervolume changes only when a full-fidelity result lands, and stays flat between.
    """
    if x not in ("budget", "seconds"):
        raise ValueError(f"x must be 'budget' or 'seconds', got {x!r}")
    snapshots = [s for s in view.snapshots if s.hypervolume is not None]
    if not snapshots:
        return empty_figure("no Pareto snapshot yet: the first comes with the first full-fidelity result")
    xs = [s.budget_used if x == "budget" else s.seconds for s in snapshots]
    fig = go.Figure(go.Scatter(
        name=view.name, x=_array(xs), y=_array(s.hypervolume for s in snapshots), mode="lines+markers",
        line={"shape": "hv"},
        hovertext=_texts(f"hypervolume {s.hypervolume:.6g}<br>{s.budget_used:.2f} trials of budget, "
                         f"{s.seconds:,.0f} s<br>front: {_numbers(s.trial_numbers)}" for s in snapshots),
        hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_layout(xaxis={"title": {"text": "budget spent (full-fidelity trials)" if x == "budget"
                                       else "seconds since the first trial started"}},
                      yaxis={"title": {"text": "hypervolume"}})
    return fig


def _curve_kind(trial: TrialView | None) -> str:
    if trial is None or trial.status.is_active:
        return "running"
    return trial.status.value


def learning_curves_figure(view: StudyView) -> go.Figure:
    """Score against fidelity, one line per trial, coloured by how the trial ended (or is now); a marker
    on every result that was promoted to a higher rung, and the rung fidelities as dashed lines.

    One trace per colour with trials separated by gaps (not one trace per trial) keeps 10,000 trials drawable.
    """
    trials = {t.number: t for t in view.trials}
    results = [r for r in view.results if SCORE in r.objectives]  # by trial number, then fidelity (StudyView)
    if not results:
        return empty_figure("no result yet")
    lines: dict[str, tuple[list[Any], list[Any], list[Any]]] = {k: ([], [], []) for k in CURVE_COLOURS}
    for number, group in itertools.groupby(results, key=lambda r: r.trial_number):
        points = list(group)
        xs, ys, ns = lines[_curve_kind(trials.get(number))]
        xs += [*(r.fidelity for r in points), None]
        ys += [*(r.objectives[SCORE] for r in points), None]
        ns += [number] * len(points) + [None]
        promoted = lines["promoted"]
        for r in points[:-1]:
            promoted[0].append(r.fidelity)
            promoted[1].append(r.objectives[SCORE])
            promoted[2].append(number)
    fig = go.Figure()
    total = len(results)
    for kind, (xs, ys, ns) in sorted(lines.items(), key=lambda kv: kv[0] == "promoted"):  # markers on top
        if not xs:
            continue
        colour = CURVE_COLOURS[kind]
        style: dict[str, Any] = (
            {"mode": "markers", "name": "promoted from this rung",
             "marker": {"symbol": "triangle-up", "size": 9, "color": colour}} if kind == "promoted" else
            {"mode": "lines+markers", "name": kind, "marker": {"size": 5, "color": colour},
             "line": {"color": colour}, "connectgaps": False})
        fig.add_trace(_scatter(total, x=_array(xs), y=_array(ys), customdata=_array(ns), **style,
                               hovertemplate=f"trial %{{customdata}}<br>fidelity %{{x:,}}<br>score %{{y:.4g}}"
                                             f"<extra>{kind}</extra>"))
    scores = [r.objectives[SCORE] for r in results]
    lo, hi = min(scores), max(scores)
    pad = 0.05 * (hi - lo or 1.0)
    rx = [v for f in view.rungs for v in (f, f, None)]
    ry = [v for _ in view.rungs for v in (lo - pad, hi + pad, None)]
    fig.add_trace(go.Scatter(name="rungs", x=rx, y=ry, mode="lines", hoverinfo="skip",
                             line={"color": "#555", "dash": "dash", "width": 1}))
    fidelities = [r.fidelity for r in results] + list(view.rungs)
    log = min(fidelities) > 0 and max(fidelities) >= 8 * min(fidelities)
    fig.update_layout(xaxis={"title": {"text": "fidelity"}, "type": "log" if log else "linear",
                             "tickvals": list(view.rungs) or None},
                      yaxis={"title": {"text": "score"}})
    return fig


def trials_frame(view: StudyView) -> pd.DataFrame:
    """Every trial, one row: the trials table and its CSV download (objectives at the fidelity reached)."""
    return pd.DataFrame(trial_rows(view), columns=trial_columns(view))


def _common_objectives(views: Sequence[StudyView]) -> tuple[Objective, ...]:
    """The objectives every study has, each from its loosest reference point (so every front counts)."""
    names = [o.name for o in views[0].definition.objectives
             if all(v.definition.objective(o.name) is not None for v in views)]
    out = []
    for name in names:
        objs = [v.definition.objective(name) for v in views]
        refs = [o.reference for o in objs if o is not None]
        direction = views[0].definition.objective(name).direction  # type: ignore[union-attr]
        out.append(Objective(name, direction, max(refs) if direction is Direction.MINIMIZE else min(refs)))
    return tuple(out)


def _history(view: StudyView, objectives: tuple[Objective, ...], same: bool) -> list[tuple[float, float]]:
    """(budget, hypervolume) per snapshot: as stored when all studies share the reference point, else
    recomputed from the snapshot's trials with the common one."""
    if same:
        return [(s.budget_used, s.hypervolume) for s in view.snapshots if s.hypervolume is not None]
    values = {e.number: e.objectives for e in view.front.completed}
    reference = reference_point(objectives)
    out = []
    for s in view.snapshots:
        raw = [[values[n][o.name] for o in objectives] for n in s.trial_numbers if n in values]
        volume = hypervolume(to_minimization(np.array(raw, dtype=np.float64).reshape(-1, len(objectives)),
                                             [o.direction for o in objectives]), reference) if raw else 0.0
        out.append((s.budget_used, float(volume)))
    return out


def compare_figures(views: Sequence[StudyView]) -> tuple[go.Figure, go.Figure, pd.DataFrame]:
    """Several studies on one page: fronts overlaid, hypervolume histories on one axis, a summary table.

    Hypervolumes compare only from one reference point: the stored values are used when the studies
    share their objectives and references (same recipe), else each snapshot's front is measured again
    on the shared objectives from the loosest reference. Fronts are drawn against the share of the model
    when the base models differ, else against trainable parameters.
    """
    columns = ["study", "strategy", "trials", "full fidelity", "front size", "budget used", "budget total",
               "final hypervolume", "best score"]
    if not views:
        blank = "choose two or more studies"
        return empty_figure(blank), empty_figure(blank), pd.DataFrame(columns=columns)
    objectives = _common_objectives(views)
    same = all(v.definition.objectives == views[0].definition.objectives for v in views)
    by_share = len({v.base_params for v in views}) > 1
    fronts, volumes, rows = go.Figure(), go.Figure(), []
    for view in views:
        entries = sorted(_points(view, view.front.entries, TRAINABLE_PARAMS, SCORE),
                         key=lambda e: e.objectives[TRAINABLE_PARAMS])
        xs = [(share_pct(e.objectives, view.base_params) if by_share else e.objectives[TRAINABLE_PARAMS])
              for e in entries]
        fronts.add_trace(go.Scatter(name=view.name, x=xs, y=[e.objectives[SCORE] for e in entries],
                                    mode="lines+markers", line={"shape": "hv"}, customdata=[e.number for e in entries],
                                    hovertext=[_hover(e.trial_id, e.number, e.objectives, view, e.plan)
                                              for e in entries],
                                    hovertemplate=f"{view.name}<br>%{{hovertext}}<extra></extra>"))
        history = _history(view, objectives, same) if objectives else []
        volumes.add_trace(go.Scatter(name=view.name, x=[b for b, _ in history], y=[h for _, h in history],
                                     mode="lines+markers", line={"shape": "hv"}))
        scores = [e.objectives[SCORE] for e in view.front.completed if SCORE in e.objectives]
        rows.append({"study": view.name, "strategy": view.strategy, "trials": len(view.trials),
                     "full fidelity": len(view.front.completed), "front size": len(view.front.entries),
                     "budget used": view.budget_used, "budget total": view.budget_total,
                     "final hypervolume": history[-1][1] if history else None,
                     "best score": max(scores) if scores else None})
    fronts.update_layout(xaxis={"title": {"text": "share of the model (%)" if by_share else _label(TRAINABLE_PARAMS)}},
                         yaxis={"title": {"text": "score"}})
    volumes.update_layout(xaxis={"title": {"text": "budget spent (full-fidelity trials)"}},
                          yaxis={"title": {"text": "hypervolume" + ("" if same else " (common reference)")}})
    return fronts, volumes, pd.DataFrame(rows, columns=columns)
