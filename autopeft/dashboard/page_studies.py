"""The studies page: every study in the store, one row each; choosing a row opens the study."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from autopeft.dashboard import ui


def _budget(used: float, total: float | None) -> str:
    return f"{used:.2f} of {total:g}" if total else f"{used:.2f}"


def studies_frame(rows: list[Any]) -> pd.DataFrame:
    """One row per study (`StudySummaryRow`), as the table shows it."""
    return pd.DataFrame([{
        "study": r.name, "status": r.status, "strategy": r.strategy, "objectives": ", ".join(r.objectives),
        "budget (full trials)": _budget(r.budget_used, r.budget_total),
        "trials": ", ".join(f"{n} {s}" for s, n in r.counts.items() if n) or "none",
        "best score": r.best_score, "hypervolume": r.hypervolume,
        "created": r.created_at, "last activity": r.last_activity,
    } for r in rows], columns=["study", "status", "strategy", "objectives", "budget (full trials)", "trials",
                               "best score", "hypervolume", "created", "last activity"])


def render_studies() -> None:
    st.title("Studies")
    rows = ui.studies()
    if not rows:
        ui.fail(f"no studies in {ui.display_url(ui.storage_url())} yet: run one with `autopeft study run`")
    frame = studies_frame(rows)
    event = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="single-row", key="studies",
                         column_config={"best score": st.column_config.NumberColumn(format="%.4f"),
                                        "hypervolume": st.column_config.NumberColumn(format="%.5g")})
    chosen = getattr(getattr(event, "selection", None), "rows", None) or []
    if chosen:
        ui.go(page="study", study=str(frame.iloc[chosen[0]]["study"]))
    st.caption("Choose a row, or open a study:")
    st.markdown(" · ".join(ui.link(r.name, page="study", study=r.name) for r in rows), unsafe_allow_html=True)
