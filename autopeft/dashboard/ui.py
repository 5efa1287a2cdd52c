"""What every page shares: the read-only store, cached reads keyed by a study's version, links, errors.

The store URL comes from $AUTOPEFT_STORAGE (`autopeft dashboard` sets it: a URL with a password never
appears on a command line). Reads are cached by the study's version (`study_version`, itself cached for
`REFRESH_SECONDS`), so a page redraw costs one small query while nothing changed.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlencode

import streamlit as st

from autopeft.errors import AutopeftError
from autopeft.store import DEFAULT_URL, display_url

if TYPE_CHECKING:
    from autopeft.dashboard.views import StudySummaryRow, StudyView
    from autopeft.store import Store

STORAGE_ENV = "AUTOPEFT_STORAGE"
STUDY_ENV = "AUTOPEFT_DASHBOARD_STUDY"
#: How often a study page reads the store again (seconds): the live refresh.
REFRESH_SECONDS = 3.0
T = TypeVar("T")


def storage_url() -> str:
    return os.environ.get(STORAGE_ENV) or DEFAULT_URL


def fail(message: str) -> NoReturn:
    """One clear line on the page, and nothing more of it (never a traceback)."""
    st.error(message)
    st.stop()
    raise AssertionError("unreachable")  # pragma: no cover - st.stop raises


def guarded(read: Callable[[], T]) -> T:
    """`read()`, with any autopeft error (store unreachable, unknown study, ...) shown as one line."""
    try:
        return read()
    except AutopeftError as err:
        fail(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


@st.cache_resource(show_spinner=False)
def cached_store(url: str) -> Store:
    """One read-only store per URL for the whole server (its connection pool is shared by every session)."""
    from autopeft.dashboard.data import open_read_only

    return open_read_only(url)


def store() -> Store:
    """The read-only store at $AUTOPEFT_STORAGE (one per URL for the whole server)."""
    url = storage_url()
    try:
        return cached_store(url)
    except AutopeftError as err:
        fail(f"cannot open {display_url(url)}: {err}")
    except Exception as err:  # a malformed URL is SQLAlchemy's ArgumentError before our store sees it
        fail(f"{display_url(url)!r} is not a store URL ({type(err).__name__}); accepted: sqlite:///FILE or "
             "postgresql+psycopg://USER@HOST/DB")


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _version(url: str, name: str) -> Any:
    from autopeft.dashboard.data import study_version

    return study_version(cached_store(url), name)


# A resource, not data: `cache_data` would unpickle a copy on every hit (2 s for 10,000 trials), and the
# view is frozen, so every session can share the one object read at this version.
@st.cache_resource(max_entries=16, show_spinner=False)
def _study(url: str, name: str, version: Any, detail: bool) -> StudyView:
    from autopeft.dashboard.data import load_study

    return load_study(cached_store(url), name, detail=detail, plan_lines=plan_lines(url))


@st.cache_data(ttl=REFRESH_SECONDS, show_spinner=False)
def _studies(url: str) -> list[StudySummaryRow]:
    from autopeft.dashboard.data import list_studies

    return list(list_studies(cached_store(url)))


def studies() -> list[StudySummaryRow]:
    """Every study's summary row, read at most every `REFRESH_SECONDS`."""
    store()  # a bad URL fails here, with its own message
    return guarded(lambda: _studies(storage_url()))


def study(name: str, *, detail: bool = False) -> StudyView:
    """The study as the pages draw it, read again only when its version changed; ``detail`` for a trial
    page (every result's metrics and every attempt, see `load_study`)."""
    store()
    url = storage_url()
    version = guarded(lambda: _version(url, name))
    return guarded(lambda: _study(url, name, version, detail))


# Figures and tables are made once per version of a study too: the live refresh and every widget click
# rerun the page, and a large study's figures take longer to make than its data takes to read. Streamlit
# copies a figure before it sends it, so sharing one between sessions is safe; the view and the drawing
# function are not hashed (underscore), the study's url, name and version stand for them.
@st.cache_resource(max_entries=64, show_spinner=False)
def _drawn(what: str, url: str, study: tuple[Any, ...], options: tuple[tuple[str, Any], ...],
           _draw: Callable[..., Any], _view: StudyView) -> Any:
    return _draw(_view, **dict(options))


def drawn(draw: Callable[..., T], view: StudyView, **options: Any) -> T:
    """``draw(view, **options)``, made once per version of the study and shared by every session."""
    what = f"{draw.__module__}.{draw.__qualname__}"
    key = (view.name, view.version, view.detail)
    result: T = _drawn(what, storage_url(), key, tuple(sorted(options.items())), draw, view)
    return result


@st.cache_resource(show_spinner=False)
def plan_lines(url: str) -> dict[int, str]:
    """The plan lines of the store's trials written so far, by trial id, shared by every session and every
    version of a study (a stored plan never changes; see `StudyView.plan_lines`)."""
    return {}


def known_study(name: str, *, detail: bool = False) -> StudyView:
    """`study(name)`, or one line naming the studies the store has."""
    names = [row.name for row in studies()]
    if name not in names:
        fail(f"no study {name!r} in {display_url(storage_url())}; studies: {', '.join(names) or 'none'}")
    return study(name, detail=detail)


def href(**params: Any) -> str:
    """A deep link to a page of this app (`?page=study&study=NAME`)."""
    return "?" + urlencode({k: v for k, v in params.items() if v is not None})


def link(label: str, **params: Any) -> str:
    """An HTML link that opens in the same tab (Streamlit's markdown links open a new one)."""
    return f'<a href="{html.escape(href(**params))}" target="_self">{html.escape(label)}</a>'


def go(**params: Any) -> NoReturn:
    """Open another page in this session: set the query parameters and rerun the whole app."""
    st.query_params.from_dict({k: str(v) for k, v in params.items() if v is not None})
    st.rerun()
    raise AssertionError("unreachable")  # pragma: no cover - st.rerun raises


def params() -> Mapping[str, str]:
    return {key: st.query_params[key] for key in st.query_params}
