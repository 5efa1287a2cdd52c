"""The compare page: fronts of several studies overlaid, their hypervolume histories, a summary table."""

from __future__ import annotations

import streamlit as st

from autopeft.dashboard import ui


def render_compare(preset: str | None) -> None:
    from autopeft.dashboard import charts

    st.title("Compare studies")
    names = [row.name for row in ui.studies()]
    if not names:
        ui.fail(f"no studies in {ui.display_url(ui.storage_url())} yet: run one with `autopeft study run`")
    wanted = [n for n in (preset or "").split(",") if n]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        ui.fail(f"no study {unknown[0]!r} in {ui.display_url(ui.storage_url())}; studies: {', '.join(names)}")
    chosen = st.multiselect("studies (two or more: say, strategies on one space and recipe)", names,
                            default=wanted or names[:2], key="compare")
    if not chosen:
        st.info("choose two or more studies")
        return
    views = [ui.study(n) for n in chosen]
    fronts, volumes, table = charts.compare_figures(views)
    a, b = st.columns(2)
    with a:
        st.markdown("**fronts**")
        st.plotly_chart(fronts, key="compare_fronts")
    with b:
        st.markdown("**hypervolume against budget** (one reference point)")
        st.plotly_chart(volumes, key="compare_volumes")
    st.dataframe(table, hide_index=True, key="compare_table")
