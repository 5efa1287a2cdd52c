"""The dashboard's Streamlit script: `autopeft dashboard` runs it (`streamlit run` of this file).

It ships inside the package so that a non-editable install has it; the repository's `dashboard/app.py`
only runs this. One script, pages chosen by the link's query parameters, so every view is a deep link:
``?page=studies``, ``?study=NAME`` (the study page), ``?study=NAME&trial=N`` (a trial), ``?page=compare``.
Without any, it opens on the study $AUTOPEFT_DASHBOARD_STUDY names (`--study`), else on the studies.
"""

from __future__ import annotations

import os

import streamlit as st

from autopeft.dashboard import ui

PAGES = ("studies", "study", "trial", "compare")


def current_page(params: dict[str, str]) -> str:
    """The page a link asks for: `page=`, else a trial or a study if it names one, else the studies."""
    page = params.get("page")
    if page:
        return page
    if "trial" in params:
        return "trial"
    return "study" if "study" in params else "studies"


def _sidebar(page: str, study: str | None) -> None:
    with st.sidebar:
        st.markdown("**autopeft**")
        entries = [ui.link("Studies", page="studies"), ui.link("Compare studies", page="compare")]
        if study:
            entries.insert(1, ui.link(f"Study {study}", page="study", study=study))
        st.markdown("<br>".join(entries), unsafe_allow_html=True)
        st.caption(f"store: {ui.display_url(ui.storage_url())}")


def main() -> None:
    st.set_page_config(page_title="autopeft", layout="wide")
    params = dict(ui.params())
    if not params and os.environ.get(ui.STUDY_ENV):
        params = {"page": "study", "study": os.environ[ui.STUDY_ENV]}
    page = current_page(params)
    _sidebar(page, params.get("study"))
    if page not in PAGES:
        ui.fail(f"no page {page!r}; pages: {', '.join(PAGES)}")
    if page == "studies":
        from autopeft.dashboard.page_studies import render_studies

        render_studies()
        return
    if page == "compare":
        from autopeft.dashboard.page_compare import render_compare

        render_compare(params.get("studies"))
        return
    name = params.get("study")
    if not name:
        ui.fail(f"the {page} page needs a study: add ?study=NAME to the link")
    if page == "trial":
        from autopeft.dashboard.page_trial import render_trial

        render_trial(name, params.get("trial"))
    else:
        from autopeft.dashboard.page_study import render_study

        render_study(name)


if __name__ == "__main__":
    main()
