"""The study page: front, trade-off picker, hypervolume history, learning curves, placement, parameters
and the trials table, redrawn from the store every few seconds while the study runs (a fragment)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from autopeft.dashboard import ui
from autopeft.dashboard.views import StudyView
from autopeft.status import TrialStatus


def render_study(name: str) -> None:
    view = ui.known_study(name)
    st.title(f"Study {name}")
    live = view.status == "running"
    st.fragment(run_every=ui.REFRESH_SECONDS if live else None)(_body)(name)


def _body(name: str) -> None:
    view = ui.study(name)
    _header(view)
    if not view.front.completed:
        st.error(f"study {name}: no trial has completed at full fidelity yet, so there is no front to show "
                 "(this page refreshes by itself while the study runs)")
    elif not view.front.entries:
        from autopeft.engine.front import empty_front_reason

        st.warning(f"study {name}: {empty_front_reason(view.front)}")
    _front(view)
    _picker(view)
    _history(view)
    _curves(view)
    _placement(view)
    _parameters(view)
    _trials(view)


def _header(view: StudyView) -> None:
    counts: dict[str, int] = {}
    for trial in view.trials:
        counts[trial.status.value] = counts.get(trial.status.value, 0) + 1
    budget = f"{view.budget_used:.2f}" + (f" of {view.budget_total:g}" if view.budget_total else "")
    st.markdown(f"**{view.status}** · {view.strategy} · objectives "
                f"{', '.join(o.name for o in view.definition.objectives)} · budget {budget} full trials · "
                + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials yet"))
    running = [t for t in view.trials if t.status is TrialStatus.RUNNING]
    if running:
        st.caption("running: " + ", ".join(f"trial {t.number} at fidelity {t.fidelity if t.fidelity else 0:,}"
                                           f" of {view.max_fidelity:,}" for t in running))


def open_selected(event: Any, key: str) -> None:
    """A chart or table selection of one trial opens it; several are listed as links."""
    selection = getattr(event, "selection", None) or {}
    points = selection.get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])
    numbers = sorted({int(_number(p)) for p in points if _number(p) is not None})
    if len(numbers) == 1:
        ui.go(page="trial", study=st.session_state["_study"], trial=numbers[0])
    elif numbers:
        st.markdown("selected: " + " · ".join(ui.link(f"trial {n}", page="trial", study=st.session_state["_study"],
                                                      trial=n) for n in numbers), unsafe_allow_html=True)


def _number(point: Any) -> Any:
    data = point.get("customdata") if isinstance(point, dict) else None
    if isinstance(data, list):
        data = data[0] if data else None
    return data if isinstance(data, int | float) and not (isinstance(data, float) and math.isnan(data)) else None


def _chart(fig: go.Figure, key: str, *, select: bool = False) -> None:
    if select:
        event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode=("points", "box", "lasso"))
        open_selected(event, key)
    else:
        st.plotly_chart(fig, key=key)


def _front(view: StudyView) -> None:
    from autopeft.dashboard import charts

    st.session_state["_study"] = view.name
    st.subheader("Pareto front")
    left, right = st.columns([4, 1])
    with left:
        a, b = st.columns(2)
        log_x = a.toggle("log scale (trainable parameters)", key="log_x")
        pruned = b.toggle("show stopped-early trials (at their last rung)", key="show_pruned")
        _chart(ui.drawn(charts.front_figure, view, log_x=log_x, show_pruned=pruned), "front", select=True)
    with right:
        failed = [t for t in view.trials if t.status is TrialStatus.FAILED]
        # One element for the list, not one per trial: each element is a message to the browser (~5 ms here).
        st.markdown("  \n".join([f"**failed trials** ({len(failed)})"] + [
            ui.link(f"trial {t.number}", page="trial", study=view.name, trial=t.number)
            + f": {html.escape((t.error or '').splitlines()[0][:120]) if t.error else 'no error text'}"
            for t in failed[:50]]), unsafe_allow_html=True)
        if len(failed) > 50:
            st.caption(f"and {len(failed) - 50} more (trials table)")
        st.markdown("**on the front**: " + " · ".join(ui.link(str(e.number), page="trial", study=view.name,
                                                             trial=e.number) for e in view.front.entries),
                    unsafe_allow_html=True)
    if len(view.definition.objectives) >= 3:
        st.plotly_chart(ui.drawn(charts.front_3d_figure, view), key="front_3d")
        for i, fig in enumerate(ui.drawn(charts.projections, view)):
            _chart(fig, f"projection_{i}", select=True)


def _picker(view: StudyView) -> None:
    from autopeft.export.select import Rule, SelectionError, score, select, share_pct

    st.subheader("Trade-off picker")
    entries = view.front.entries
    if not entries:
        st.caption("the picker needs a front")
        return
    # Bounds from every full-fidelity trial, not the front alone: they only widen as the study runs, so a
    # live refresh never moves a chosen value out of its slider.
    shares = [s for s in (share_pct(e, view.front) for e in view.front.completed) if s is not None]
    scores = [score(e) for e in view.front.completed]
    default_share = max((s for s in (share_pct(e, view.front) for e in entries) if s is not None), default=None)
    by = st.radio("choose by", ["parameter budget", "score floor"], horizontal=True, key="pick_by")
    if by == "parameter budget" and shares:
        top = max(shares) * 1.1 or 1.0
        limit = st.slider("max trainable share (% of the model)", 0.0, float(f"{top:.3g}"),
                          float(default_share if default_share is not None else max(shares)),
                          step=_step(top), format="%.4f", key="max_params_pct")
        rule, flag = Rule(max_params_pct=limit), f"--max-params-pct {limit:g}"
    else:
        lo, hi = min(scores), max(scores)
        floor = st.slider("score floor", float(lo) - _step(hi - lo), float(hi), float(lo), step=_step(hi - lo),
                          format="%.4f", key="min_score")
        rule, flag = Rule(min_score=floor), f"--min-score {floor:g}"
    try:
        entry = select(view.front, rule, study=f"study {view.name!r}")
    except SelectionError as err:
        st.warning(str(err))
        return
    st.session_state["picked_trial"] = entry.number
    pct = share_pct(entry, view.front)
    st.markdown(f"picked {ui.link(f'trial {entry.number}', page='trial', study=view.name, trial=entry.number)}: "
                f"score {score(entry):.4f}, {entry.objectives.get('trainable_params', 0):,.0f} trainable parameters"
                + (f" ({pct:.4g}% of the model)" if pct is not None else ""), unsafe_allow_html=True)
    st.code(f"autopeft export {view.name} {flag} --out exported/", language="bash")


def _step(span: float) -> float:
    """A slider step of about a thousandth of `span` (a round number)."""
    if not span > 0:
        return 0.001
    return float(10 ** math.floor(math.log10(span / 1000)))


def _history(view: StudyView) -> None:
    from autopeft.dashboard import charts

    st.subheader("Hypervolume history")
    a, b = st.columns(2)
    with a:
        st.plotly_chart(ui.drawn(charts.hypervolume_figure, view, x="budget"), key="hv_budget")
    with b:
        st.plotly_chart(ui.drawn(charts.hypervolume_figure, view, x="seconds"), key="hv_seconds")


def _curves(view: StudyView) -> None:
    from autopeft.dashboard import charts

    st.subheader("Learning curves across rungs")
    _chart(ui.drawn(charts.learning_curves_figure, view), "curves", select=True)


def _placement(view: StudyView) -> None:
    from autopeft.dashboard import charts

    st.subheader("Where the adapters go (front trials)")
    _show(ui.drawn(charts.plan_grid_figure, view), "plan_grid")


def _parameters(view: StudyView) -> None:
    from autopeft.dashboard import charts

    st.subheader("Parameters")
    a, b = st.columns([3, 2])
    with a:
        _show(ui.drawn(charts.parameters_figure, view), "parameters")
    with b:
        _show(ui.drawn(charts.parameter_importance, view), "importance")


def _show(item: Any, key: str) -> None:
    """A figure, a table, or a message, whichever a chart function returned."""
    if isinstance(item, go.Figure):
        st.plotly_chart(item, key=key)
    elif isinstance(item, str):
        st.caption(item)
    elif item is not None and len(item) == 0 and item.attrs.get("reason"):
        st.caption(item.attrs["reason"])
    elif item is not None:
        st.dataframe(item, hide_index=True, key=key)


def _trials_frame(view: StudyView) -> Any:
    from autopeft.dashboard import charts

    return charts.trials_frame(view)


def _trials(view: StudyView) -> None:

    st.subheader("Trials")
    frame = ui.drawn(_trials_frame, view)
    present = [s.value for s in TrialStatus if s.value in set(frame["status"])]
    chosen: Sequence[str] = st.multiselect("status", present, default=present, key="status_filter")
    shown = frame[frame["status"].isin(list(chosen))].reset_index(drop=True)
    event = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="trials")
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if rows:
        ui.go(page="trial", study=view.name, trial=int(shown.iloc[rows[0]]["number"]))
    # Made when clicked (a callable): writing 10,000 rows as CSV on every rerun cost a third of a second.
    st.download_button("Download CSV", lambda: shown.to_csv(index=False), file_name=f"{view.name}-trials.csv",
                       mime="text/csv", key="trials_csv", on_click="ignore")
