"""The trial page: plan grid, configuration, results per fidelity, jobs, and the export (command and files)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from autopeft.dashboard import ui
from autopeft.dashboard.rows import attempt_rows, result_rows
from autopeft.dashboard.views import StudyView, TrialView
from autopeft.engine.front import Front
from autopeft.errors import AutopeftError
from autopeft.store import has_password
from autopeft.store.urls import display_url


def render_trial(name: str, number_text: str | None) -> None:
    view = ui.known_study(name, detail=True)
    try:
        number = int(str(number_text))
    except ValueError:
        ui.fail(f"trial {number_text!r} is not a trial number (the link needs &trial=N)")
    trial = view.trial(number)
    if trial is None:
        span = f"trials 0-{max(t.number for t in view.trials)}" if view.trials else "no trials yet"
        ui.fail(f"study {name!r} has no trial {number} ({span})")
    st.title(f"Trial {number} of {name}")
    st.markdown(ui.link(f"back to study {name}", page="study", study=name), unsafe_allow_html=True)
    _summary(view, trial)
    _plan(view, trial)
    _results(view, trial)
    _attempts(view, trial)
    _export(view, trial)


def _summary(view: StudyView, trial: TrialView) -> None:
    values = ", ".join(f"{k} {v:,.0f}" if k == "trainable_params" else f"{k} {v:.4g}"
                       for k, v in trial.objectives.items())
    st.markdown(f"**{trial.status.value}**" + (" · on the front" if trial.on_front else "")
                + f" · fidelity reached {trial.fidelity if trial.fidelity is not None else '-'} of "
                f"{view.max_fidelity} · " + (values or "no result yet"))
    timing = {"created": trial.created_at, "started": trial.started_at, "finished": trial.finished_at,
              "worker": trial.worker, "bracket": trial.bracket}
    st.caption(" · ".join(f"{k} {v:%Y-%m-%d %H:%M:%S}" if hasattr(v, "strftime") else f"{k} {v}"
                          for k, v in timing.items() if v is not None))
    if trial.error:
        st.markdown("**error**")
        st.code(trial.error, language=None)


def _plan(view: StudyView, trial: TrialView) -> None:
    from autopeft.dashboard import charts
    from autopeft.dashboard.rows import plan_of
    from autopeft.space.plan_text import plan_text

    st.subheader("Plan")
    plan = plan_of(trial.plan) if trial.plan is not None else None
    if plan:
        st.markdown(f"`{plan_text(plan)}`")
        st.caption("layer x role, each cell the method and its sizes")
        st.dataframe(charts.trial_plan_grid(plan), key="trial_plan")
    st.markdown("**configuration**")
    st.json(trial.config, expanded=True)
    if trial.plan is not None:
        with st.expander("compiled plan (as stored)"):
            st.json(trial.plan)


def _results(view: StudyView, trial: TrialView) -> None:
    st.subheader("Results per fidelity")
    rows = result_rows(view, trial.number)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="results")
    else:
        st.caption("no result yet")


def _attempts(view: StudyView, trial: TrialView) -> None:
    st.subheader("Jobs")
    rows = attempt_rows(view, trial.number)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="attempts")
    else:
        st.caption("no job recorded")


def export_command(study: str, number: int, storage: str) -> tuple[str, str | None]:
    """The `autopeft export` command for this trial, and a note when the store URL holds a password."""
    if has_password(storage):
        return (f"autopeft export {study} --trial {number} --out exported/",
                f"with AUTOPEFT_STORAGE set to the store URL, password included: {display_url(storage)}")
    option = "" if storage == ui.DEFAULT_URL else f" --storage {storage}"
    return f"autopeft export {study} --trial {number} --out exported/{option}", None


@st.cache_data(max_entries=32, show_spinner="building the export...")
def _texts(url: str, study: str, number: int, version: Any, _front: Front) -> tuple[str, str | None, list[str]]:
    from autopeft.export.select import Rule
    from autopeft.export.study_export import export_texts

    texts = export_texts(ui.cached_store(url), study, Rule(trial=number), front=_front)
    reasons = list(texts.peft.unsupported) if texts.peft is not None else []
    return texts.bundle_yaml, texts.adapter_config, [*texts.notes, *reasons]


def _export(view: StudyView, trial: TrialView) -> None:
    st.subheader("Export")
    command, note = export_command(view.name, trial.number, ui.storage_url())
    st.code(command, language="bash")
    if note:
        st.caption(note)
    if not trial.full:
        st.info(f"trial {trial.number} is {trial.status.value}: only trials completed at full fidelity can be "
                "exported")
        return
    try:
        bundle, adapter, notes = _texts(ui.storage_url(), view.name, trial.number, view.version, view.front)
    except (AutopeftError, ImportError, OSError) as err:
        st.warning(f"cannot build the export: {str(err).strip().splitlines()[0] if str(err).strip() else err!r}")
        return
    a, b = st.columns(2)
    a.download_button("Download autopeft.yaml", bundle, file_name="autopeft.yaml", mime="application/x-yaml",
                      key="download_bundle", on_click="ignore")
    if adapter is not None:
        b.download_button("Download adapter_config.json (peft)", adapter, file_name="adapter_config.json",
                          mime="application/json", key="download_adapter", on_click="ignore")
    else:
        b.caption("peft cannot express this plan: " + "; ".join(notes))
    with st.expander("autopeft.yaml"):
        st.code(bundle, language="yaml")
    if adapter is not None:
        with st.expander("adapter_config.json"):
            st.code(adapter, language="json")
