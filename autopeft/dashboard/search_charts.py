"""What the search chose: where the adapters go (layer x role grids), the searched parameters, their importance.

Roles come from `autopeft.space.plan_text` (the torch-free list the plan texts use); methods that adapt a
whole sub-block rather than a projection (prefix, bottleneck adapters) get a column per block. Plotly and
pandas only; `autopeft.dashboard.charts` re-exports everything public here.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from autopeft.dashboard.rows import plan_of
from autopeft.dashboard.views import StudyView
from autopeft.engine.definition import SCORE
from autopeft.errors import AutopeftError
from autopeft.layer_selectors import parse_layer_selector
from autopeft.search.samplers.optuna_sampler import optuna_params, quiet_optuna
from autopeft.space.encoding import SpaceEncoder, choice_index
from autopeft.space.params import Param
from autopeft.space.plan_text import DEFAULT_ROLES, ROLE_LETTERS

#: Block columns for methods on a whole sub-block, after the projection roles.
ATTENTION_BLOCK, FEED_FORWARD_BLOCK, WHOLE_LAYER = "attention (block)", "feed-forward (block)", "layer"
#: Grid columns: every projection role, then the blocks.
GRID_COLUMNS = (*ROLE_LETTERS, ATTENTION_BLOCK, FEED_FORWARD_BLOCK, WHOLE_LAYER)
#: Fewer complete trials than this: no importance (a forest on a handful of points says nothing).
MIN_IMPORTANCE_TRIALS = 5
_SIZE_FIELDS = ("r", "alpha", "size", "length")
_UNBOUNDED = 1 << 20


def _cells(spec: Mapping[str, Any]) -> list[str]:
    """The grid columns one method entry occupies."""
    method = str(spec.get("method"))
    roles = spec.get("roles") or DEFAULT_ROLES.get(method)
    if roles:
        return [str(r) for r in roles]
    if method == "prefix":  # keys and values in front of the layer's attention
        return [ATTENTION_BLOCK]
    if method == "serial_adapter":  # after the feed-forward output, and after attention for houlsby
        return [ATTENTION_BLOCK, FEED_FORWARD_BLOCK] if spec.get("placement") == "houlsby" else [FEED_FORWARD_BLOCK]
    if method == "parallel_adapter":  # beside the feed-forward block
        return [FEED_FORWARD_BLOCK]
    return [WHOLE_LAYER]


def _layers(plan: Mapping[Any, Any] | None, num_layers: int | None) -> dict[int | str, list[Mapping[str, Any]]]:
    """Layer -> method entries; a selector that cannot be expanded (`all` without a layer count) stays a row."""
    out: dict[int | str, list[Mapping[str, Any]]] = {}
    for selector, methods in (plan_of(plan) or {}).items():
        items = [methods] if isinstance(methods, Mapping) else list(methods or [])
        specs = [m for m in items if isinstance(m, Mapping) and m.get("method") not in (None, "none")]
        try:
            if num_layers is None and "all" in str(selector):
                raise AutopeftError("needs the layer count")
            layers: list[int | str] = list(parse_layer_selector(selector, num_layers or _UNBOUNDED))
        except AutopeftError:
            layers = [str(selector)]
        for layer in layers:
            out.setdefault(layer, []).extend(specs)
    return out


def _frame(cells: Mapping[tuple[int | str, str], str], num_layers: int | None, drop_empty: bool) -> pd.DataFrame:
    numbered = [k for k, _ in cells if isinstance(k, int)]
    top = num_layers if num_layers is not None else (max(numbered) + 1 if numbered else 0)
    rows: list[int | str] = [*range(top), *sorted({k for k, _ in cells if isinstance(k, str)})]
    frame = pd.DataFrame([[cells.get((r, c), "") for c in GRID_COLUMNS] for r in rows],
                         index=pd.Index(rows, name="layer"), columns=list(GRID_COLUMNS))
    if drop_empty:
        frame = frame.loc[:, [c for c in GRID_COLUMNS if (frame[c] != "").any()]]
    return frame


def _counts(plans: Iterable[Mapping[str, Any] | None], num_layers: int | None
            ) -> tuple[dict[tuple[int | str, str], Counter[str]], dict[tuple[int | str, str], int]]:
    """Per cell: how many plans put each method there, and how many plans put any adapter there."""
    methods: dict[tuple[int | str, str], Counter[str]] = {}
    plans_in: dict[tuple[int | str, str], int] = {}
    for plan in plans:
        seen: set[tuple[int | str, str]] = set()
        for layer, specs in _layers(plan, num_layers).items():
            for spec in specs:
                for column in dict.fromkeys(_cells(spec)):
                    methods.setdefault((layer, column), Counter())[str(spec["method"])] += 1
                    seen.add((layer, column))
        for cell in seen:
            plans_in[cell] = plans_in.get(cell, 0) + 1
    return methods, plans_in


def _count_text(counter: Counter[str]) -> str:
    return ", ".join(f"{m} ×{n}" for m, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def plan_grid(plans: Iterable[Mapping[str, Any] | None], num_layers: int | None = None, *,
              drop_empty: bool = True) -> pd.DataFrame:
    """Layer x role: how many of ``plans`` put each method in each cell ("lora ×5, parallel_adapter ×2").

    Rows are layers 0 to ``num_layers - 1`` (default: up to the highest layer any plan names); columns
    are the projection roles, then the attention and feed-forward blocks, empty columns dropped.
    """
    methods, _ = _counts(plans, num_layers)
    return _frame({cell: _count_text(c) for cell, c in methods.items()}, num_layers, drop_empty)


def _sized(spec: Mapping[str, Any]) -> str:
    sizes = " ".join(f"{k}={spec[k]}" for k in _SIZE_FIELDS if k in spec)
    return f"{spec['method']} {sizes}".strip()


def trial_plan_grid(plan: Mapping[str, Any] | None, num_layers: int | None = None, *,
                    drop_empty: bool = True) -> pd.DataFrame:
    """One trial's plan as the layer x role grid, each cell the method with its sizes ("lora r=8 alpha=16")."""
    cells: dict[tuple[int | str, str], list[str]] = {}
    for layer, specs in _layers(plan, num_layers).items():
        for spec in specs:
            for column in dict.fromkeys(_cells(spec)):
                cells.setdefault((layer, column), []).append(_sized(spec))
    return _frame({cell: " + ".join(texts) for cell, texts in cells.items()}, num_layers, drop_empty)


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why it is blank (every chart of the dashboard uses it)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def plan_grid_figure(view: StudyView, num_layers: int | None = None) -> go.Figure:
    """A heatmap over the front's plans: in how many front trials an adapter sits in each layer and role.

    Colour is a count of front trials (not of methods), so a cell reads "this many of the front adapt
    here"; the hover lists which methods.
    """
    plans = [e.plan for e in view.front.entries]
    if not plans:
        return empty_figure("no front yet: no trial has reached full fidelity")
    methods, plans_in = _counts(plans, num_layers)
    if not methods:
        return empty_figure("the front's plans adapt no layer (the head trains alone)")
    frame = _frame({cell: _count_text(c) for cell, c in methods.items()}, num_layers, drop_empty=True)
    rows, columns = list(frame.index), list(frame.columns)
    z = [[plans_in.get((r, c), 0) for c in columns] for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=columns, y=[f"L{r}" if isinstance(r, int) else r for r in rows], zmin=0, zmax=len(plans),
        colorscale="Blues", colorbar={"title": {"text": "front trials"}}, text=frame.values.tolist(),
        texttemplate="%{z}",
        hovertemplate="%{y} %{x}<br>%{z} of " + str(len(plans)) + " front trials<br>%{text}<extra></extra>"))
    fig.update_layout(yaxis={"autorange": "reversed", "title": {"text": "layer"}}, xaxis={"title": {"text": "role"}})
    return fig


# -- searched parameters ---------------------------------------------------------------------------------
def _dims(view: StudyView, configs: Sequence[Mapping[str, Any]]) -> dict[str, Param] | None:
    """The study's expanded parameters; the layer count is read off the configurations' `layer_<i>.` keys."""
    indices = [int(m.group(1)) for c in configs for k in c if (m := re.match(r"layer_(\d+)\.", k))]
    try:
        return view.definition.search_space().dimensions(max(indices) + 1 if indices else 1)
    except (AutopeftError, ValueError):
        return None


def nice_ticks(lo: float, hi: float, log: bool) -> list[float]:
    """A few round values between lo and hi (1-2-5 steps; decades, with 2 and 5 when few, on a log scale)."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo or (log and lo <= 0):
        return [lo] if math.isfinite(lo) else []
    if log:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for steps in ((1,) if len(decades) > 4 else (1, 2, 5), range(1, 10)):
            ticks = [m * 10.0**d for d in decades for m in steps if lo <= m * 10.0**d <= hi]
            if len(ticks) >= 3:
                break
        return ticks
    raw = (hi - lo) / 5
    step = min((m * 10.0 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    return [float(v) for v in np.arange(math.ceil(lo / step) * step, hi + step / 2, step)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _axis(name: str, values: list[Any], param: Param | None) -> dict[str, Any]:
    """One parallel-coordinates axis: categories as codes with their labels, ranges as numbers (log10 where
    the range is log), and "–" below the range for trials where the parameter does not exist."""
    absent = any(v is None for v in values)
    present = [v for v in values if v is not None]
    if (param is not None and param.choices is not None) or not all(_is_number(v) for v in present):
        shift = 1 if absent else 0  # "–" takes code 0, at the bottom as on the numeric axes
        if param is not None and param.choices is not None:
            choices = list(param.choices)
            codes = [0 if v is None else shift + choice_index(param, v) for v in values]
        else:
            choices = sorted({repr(v): v for v in present}.values(), key=str)
            index = {repr(c): i for i, c in enumerate(choices)}
            codes = [0 if v is None else shift + index[repr(v)] for v in values]
        labels = ["–"] * shift + [",".join(map(str, c)) if isinstance(c, list | tuple) else str(c) for c in choices]
        return {"label": name, "values": np.array(codes, dtype=np.float64), "tickvals": list(range(len(labels))),
                "ticktext": labels,
                "range": [0, max(len(labels) - 1, 1)]}
    log = bool(param is not None and param.log)
    bounds = param.int_range or param.float_range if param is not None else None
    lo, hi = (float(bounds[0]), float(bounds[1])) if bounds else (min(present, default=0.0), max(present, default=1.0))
    ticks = nice_ticks(lo, hi, log)
    scale = math.log10 if log else float
    t_lo, t_hi = scale(lo), scale(hi)
    below = t_lo - 0.1 * ((t_hi - t_lo) or 1.0)
    axis: dict[str, Any] = {"label": name + (" (log)" if log else ""),
                            # An array, not a list: plotly checks a list element by element (seconds for
                            # 10,000 trials), an array as it is.
                            "values": np.array([below if v is None else scale(v) for v in values], dtype=np.float64),
                            "range": [below if absent else t_lo, t_hi]}
    if log or absent:
        axis["tickvals"] = ([below] if absent else []) + [scale(t) for t in ticks]
        axis["ticktext"] = (["–"] if absent else []) + [f"{t:g}" for t in ticks]
    return axis


def parameters_figure(view: StudyView) -> go.Figure:
    """Parallel coordinates of the searched parameters of complete trials, coloured by score.

    Complete trials only, since a score at a lower fidelity would paint a half-trained configuration as
    bad. Categorical values get their own ticks; a conditional parameter that a trial lacks sits on "–".
    """
    trials = [t for t in view.trials if t.full and SCORE in t.objectives]
    if not trials:
        return empty_figure("no trial has reached full fidelity yet")
    configs = [t.config for t in trials]
    dims = _dims(view, configs) or {}
    names = [n for n in dims if any(n in c for c in configs)] or sorted({k for c in configs for k in c})
    axes = [_axis(n, [c.get(n) for c in configs], dims.get(n)) for n in names]
    scores = np.array([t.objectives[SCORE] for t in trials], dtype=np.float64)
    return go.Figure(go.Parcoords(
        dimensions=axes, line={"color": scores, "colorscale": "Viridis", "showscale": True,
                               "colorbar": {"title": {"text": "score"}}}))


def _no_importance(reason: str) -> pd.DataFrame:
    frame = pd.DataFrame(columns=["parameter", "importance", "note"])
    frame.attrs["reason"] = reason
    return frame


def parameter_importance(view: StudyView, *, max_trials: int = 500, n_trees: int = 32, max_depth: int = 8,
                         seed: int = 0) -> pd.DataFrame:
    """How much each searched parameter explains the score of complete trials: Optuna's fANOVA evaluator
    over an in-memory study of them (at most ``max_trials``, drawn with ``seed``), normalised to sum 1.

    The forest is smaller than Optuna's default (64 trees of depth 64), which takes tens of seconds on a
    thousand trials; 32 trees of depth 8 rank the parameters the same in about a second.

    One row per searched parameter, most important first. fANOVA needs every parameter in every trial,
    so a conditional parameter (a rank that exists only for LoRA) or one that never varied gets no value
    and a note; too few complete trials give an empty frame with ``attrs["reason"]``.
    """
    trials = [t for t in view.trials if t.full and SCORE in t.objectives]
    if len(trials) < MIN_IMPORTANCE_TRIALS:
        return _no_importance(f"importance needs {MIN_IMPORTANCE_TRIALS} complete trials; the study has "
                              f"{len(trials)}")
    dims = _dims(view, [t.config for t in trials])
    if dims is None:
        return _no_importance("the study's search space could not be read back from the store")
    encoder = SpaceEncoder(dims)
    fitted = [(p, t.objectives[SCORE]) for t in trials if (p := optuna_params(encoder, t.config)) is not None]
    if len(fitted) < MIN_IMPORTANCE_TRIALS:
        return _no_importance(f"only {len(fitted)} complete trials fit the study's space")
    if len(fitted) > max_trials:
        fitted = random.Random(seed).sample(fitted, max_trials)
    present = Counter(name for (params, _), _ in fitted for name in params)
    distinct = {name: {repr(p[name]) for (p, _), _ in fitted if name in p} for name in dims}
    notes = {name: ("never set" if present[name] == 0 else
                    f"conditional: set in {present[name]} of {len(fitted)} trials" if present[name] < len(fitted)
                    else "the same in every trial" if len(distinct[name]) < 2 else "") for name in dims}
    measured = [name for name in dims if not notes[name]]
    importances: dict[str, float] = {}
    if measured:
        import optuna

        with quiet_optuna():
            study = optuna.create_study(direction="maximize")
            for (params, dists), score in fitted:
                study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=score))
            evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=n_trees, max_depth=max_depth, seed=seed)
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=measured)
    rows = [{"parameter": name, "importance": importances.get(name, float("nan")), "note": notes[name]}
            for name in dims]
    frame = pd.DataFrame(rows, columns=["parameter", "importance", "note"])
    return frame.sort_values("importance", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
