"""optuna-dashboard 0.21.0 against our dashboard, in one run: the data of the study page, first load and
reload, for the same study in both tools' stores, timed interleaved in one process on the same machine.

The studies, filled once per backend (the fill times are printed and kept; they are not what is measured):
- ours: `dashboard_load.py`'s study, filled by its own `fill` (imported, through the `Store` API): one
  Hyperband study of N trials of the `mixed` space on six layers, 4N results, 4N attempts, a Pareto
  snapshot after every full-fidelity result, the last three trials running;
- the peer's: an Optuna RDB study of the same shape: directions (maximize, minimize), N trials with the
  same parameters (a log-scaled learning rate; per layer a categorical method and, depending on it, a
  log-scaled int rank, size or prefix length: `optuna.distributions`), per ten trials three stop at the
  first rung, two at the second, one each at the third, fourth and eighth (PRUNED, Optuna has no paused
  state) and two reach the ninth, full fidelity (COMPLETE, with both objective values): four intermediate
  values a trial on average (`trial.report` at fidelities 512 ... 131072, eta 2), one trial in fifty FAIL,
  the last three RUNNING, a few user attrs. Built with `optuna.trial.create_trial`, written in chunks of
  500 in bulk with optuna's own ORM models (`Study.add_trials` writes the same rows at about 0.1 s a
  trial here: `--fill-api` uses it), then read back and compared with what was built.
SQLite always (two files); PostgreSQL too when the local server answers (two throwaway schemas, dropped
afterwards). The JSON checks the shapes agree: trials, results = intermediate values, full-fidelity
trials = COMPLETE trials.

The peer in two settings (`PEER_SETTINGS`), both timed: ``cli``, what `optuna-dashboard <url>` serves
(its command builds a plain `RDBStorage` from the URL, which fetches every trial from the database on
each refetch), and ``cached_storage``, the same app on `optuna.storages.get_storage(url)` (optuna's
`_CachedStorage`, as `optuna.create_study` uses it: finished trials kept in memory, only unfinished ones
refetched), what a user serving it from Python can pass without new code. The headline ratios are
against whichever setting is faster (its "strongest ordinary setting"); both settings' ratios are kept.

What is timed, per backend, after one warm-up round (not counted), R rounds of, in this order:
1. ours, first load: what the study page needs on a first visit, on a fresh read-only store
   (`open_read_only`, then `list_studies` and `load_study` light: the connection, the schema check and
   the reads; the figures Streamlit then draws are `dashboard_load.py`'s, not timed here);
2. the peer, first load, each setting: a fresh app (`optuna_dashboard.wsgi(storage)`, every cache empty,
   its module-level importance cache cleared), called in-process with a WSGI environ (no sockets), with
   the four requests of its study page in order: `GET /api/meta`, `GET /api/studies`,
   `GET /api/studies/<id>?after=0` (every trial, the Pareto front, the search space) and
   `GET /api/studies/<id>/param_importances` (PED-ANOVA per objective);
3. ours, reload: `list_studies` and `load_study` light again on that store (its connections open): what
   the page reads after a new result (with no new result, Streamlit's caches serve it without a read);
4. the peer, reload, each setting: the four requests again on that app, more than 10 s after its last
   fetch (its copy of the trial list expired: it refetches the trials; the importances stay cached);
then, the peer only, not compared with ours: the reload within 10 s (its trial list cached) and its poll
(`GET /api/studies/<id>?after=<first running trial>`, every few seconds on a live page) with the trial
list expired. A `gc.collect()` precedes each timed step. Reported per backend: median, min and max of
each, the peer's per-request breakdown, and ``ratio_first_load_peer_over_ours`` and
``ratio_reload_peer_over_ours`` (the strongest setting's median over ours: above 1, ours is faster),
with the spread of the per-round ratios.

Full run:  python benchmarks/dashboard_peer.py            (10,000 trials, 3 rounds after a warm-up, both
                                                           backends; 30 to 40 min on 2 cores, most of it
                                                           the fills and the peer's first loads)
CI smoke:  python benchmarks/dashboard_peer.py --quick    (200 trials, 3 rounds)
Options:   --rounds R, --trials N, --pg-trials N (the PostgreSQL studies' size, default N), --no-pg, --no-sqlite,
           --sqlite-dir DIR (keep the two SQLite files there, or reuse them when they exist), --fill-api
Needs the bench extra: pip install -c constraints.txt -e '.[bench]'  (optuna-dashboard==0.21.0)
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import dashboard_load as ours_bench  # benchmarks/, the script's folder: our study's fill, and ROOT on sys.path
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from pg_scratch import machine, pg_reachable, pg_schema

from autopeft.dashboard.data import list_studies, load_study, open_read_only
from autopeft.store import Store

ROOT = ours_bench.ROOT
STUDY = "bench"
PG_URL = os.environ.get("AUTOPEFT_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: As in dashboard_load.py: fidelity 512 to 131072 examples, eta 2 (nine rungs), and the rungs reached by
#: each of ten consecutive trials (mean 4).
RUNGS = tuple(512 * 2**k for k in range(9))
DEPTHS = (1, 1, 1, 2, 2, 3, 4, 8, 9, 9)
LAYERS = 6
METHODS = ("none", "lora", "dora", "serial_adapter", "parallel_adapter", "prefix", "ia3")
SIZE_PARAM = {"lora": "rank", "dora": "rank", "serial_adapter": "size", "parallel_adapter": "size",
              "prefix": "length"}
SIZE_RANGE = {"rank": (1, 32), "size": (4, 128), "length": (1, 32)}
BASE_PARAMS = 22_713_216
CHUNK = 500
#: The requests of the study page's first load, in order.
FIRST_LOAD = ("meta", "studies", "study_detail", "param_importances")


def _config(rng: random.Random) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """One configuration of the mixed space with its distributions (conditional sizes, as our sampler)."""
    lr = FloatDistribution(1e-4, 1e-2, log=True)
    params: dict[str, Any] = {"learning_rate": math.exp(rng.uniform(math.log(1e-4), math.log(1e-2)))}
    dists: dict[str, BaseDistribution] = {"learning_rate": lr}
    for layer in range(LAYERS):
        method = rng.choice(METHODS)
        params[f"layer_{layer}.method"] = method
        dists[f"layer_{layer}.method"] = CategoricalDistribution(METHODS)
        if method in SIZE_PARAM:
            name = SIZE_PARAM[method]
            low, high = SIZE_RANGE[name]
            params[f"layer_{layer}.{name}"] = round(math.exp(rng.uniform(math.log(low), math.log(high))))
            dists[f"layer_{layer}.{name}"] = IntDistribution(low, high, log=True)
    return params, dists


def _objectives(params: dict[str, Any], fidelity: int, number: int) -> tuple[float, float]:
    """(score, trainable_params) as dashboard_load.py makes them up: larger adapters score higher."""
    size = sum(768.0 * float(v) for k, v in params.items() if k.endswith((".rank", ".size", ".length")))
    quality = min(0.93, 0.55 + size / 2e5) - 0.02 * ((number * 7919) % 13) / 13
    return quality * (1.0 - 0.4 * (1.0 - fidelity / RUNGS[-1]) ** 2), 1536.0 + size


def make_trial(number: int, trials: int, rng: random.Random) -> FrozenTrial:
    """Trial ``number`` of ``trials``: its state, intermediate values, values and user attrs."""
    params, dists = _config(rng)
    depth = DEPTHS[number % len(DEPTHS)]
    running = number >= trials - 3
    reported = RUNGS[: depth - 1] if running else RUNGS[:depth]
    intermediate = {f: _objectives(params, f, number)[0] for f in reported}
    score, trainable = _objectives(params, RUNGS[depth - 1], number)
    attrs = {"worker": f"bench:{number % 4}", "fidelity": reported[-1] if reported else 0,
             "trainable_share": trainable / BASE_PARAMS, "train_seconds": RUNGS[depth - 1] / 180.0}
    if running:
        state, values = TrialState.RUNNING, None
    elif depth <= 2 and number % 50 == 0:
        state, values = TrialState.FAIL, None
        attrs["error"] = "RuntimeError: CUDA out of memory"
    elif depth == len(RUNGS):
        state, values = TrialState.COMPLETE, [score, trainable]
    else:
        state, values = TrialState.PRUNED, None
    return optuna.trial.create_trial(state=state, values=values, params=params, distributions=dists,
                                     user_attrs=attrs, intermediate_values=intermediate)


def _fast_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage for filling whose commits are not flushed to disk one by one (same rows, sooner)."""
    from sqlalchemy import event

    storage = optuna.storages.RDBStorage(url)
    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _no_sync(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        sqlite = engine.dialect.name == "sqlite"
        cursor.execute("PRAGMA synchronous = OFF" if sqlite else "SET synchronous_commit = off")
        cursor.close()
        if not sqlite:
            dbapi_conn.commit()

    engine.dispose()  # connections made while creating the tables: reopened with the setting
    return storage


def _insert(storage: optuna.storages.RDBStorage, study_id: int, trials: list[FrozenTrial], first: int) -> None:
    """Write ``trials`` (numbers ``first`` on) in one transaction: the rows `RDBStorage.create_new_trial`
    writes for a template trial (trial, params, values, intermediate values, user attrs), with their values
    encoded by optuna's own models, but inserted in bulk rather than some sixty statements a trial."""
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        rows = [models.TrialModel(study_id=study_id, number=first + i, state=t.state,
                                  datetime_start=t.datetime_start, datetime_complete=t.datetime_complete)
                for i, t in enumerate(trials)]
        session.add_all(rows)
        session.flush()  # the trial ids
        children: list[Any] = []
        for row, t in zip(rows, trials, strict=True):
            tid = row.trial_id
            children += [models.TrialParamModel(trial_id=tid, param_name=name, distribution_json=
                                                optuna.distributions.distribution_to_json(t.distributions[name]),
                                                param_value=t.distributions[name].to_internal_repr(value))
                         for name, value in t.params.items()]
            for objective, value in enumerate(t.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                children.append(models.TrialValueModel(trial_id=tid, objective=objective, value=stored,
                                                       value_type=kind))
            for step, value in t.intermediate_values.items():
                stored_iv, kind_iv = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                children.append(models.TrialIntermediateValueModel(
                    trial_id=tid, step=step, intermediate_value=stored_iv, intermediate_value_type=kind_iv))
            children += [models.TrialUserAttributeModel(trial_id=tid, key=k, value_json=json.dumps(v))
                         for k, v in t.user_attrs.items()]
        session.add_all(children)
        session.commit()


def fill(url: str, trials: int, *, seed: int = 0, api: bool = False,
         log: Callable[[str], None] = print) -> dict[str, Any]:
    """One study of ``trials`` trials, in chunks of CHUNK: built with `create_trial` (which validates them),
    then written in bulk (`_insert`), or with ``api`` through `Study.add_trials` (the same rows, one trial
    at a time: about 0.1 s a trial here). Every trial is read back and compared with what was built."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _fast_storage(url)
    study = optuna.create_study(storage=storage, study_name=STUDY, directions=["maximize", "minimize"])
    rng = random.Random(seed)
    built: list[FrozenTrial] = []
    started = time.perf_counter()
    for first in range(0, trials, CHUNK):
        chunk = [make_trial(n, trials, rng) for n in range(first, min(first + CHUNK, trials))]
        if api:
            study.add_trials(chunk)
        else:
            _insert(storage, study._study_id, chunk, first)
        built += chunk
        log(f"  added {first + len(chunk)}/{trials} trials ({time.perf_counter() - started:.0f} s)")
    seconds = time.perf_counter() - started
    stored = study.get_trials(deepcopy=False)
    _check_same(built, stored)
    storage.engine.dispose()
    return {**_counts(stored), "fill_seconds": round(seconds, 1), "fill": "add_trials" if api else "bulk"}


def _check_same(built: list[FrozenTrial], stored: list[FrozenTrial]) -> None:
    """The storage gives back the trials as built (numbers, states, params, values, reports, attrs)."""
    if len(built) != len(stored):
        raise RuntimeError(f"wrote {len(built)} trials, read back {len(stored)}")
    for number, (b, s) in enumerate(zip(built, stored, strict=True)):
        mine = (number, b.state, b.params, b.distributions, b.values, b.intermediate_values, b.user_attrs)
        theirs = (s.number, s.state, s.params, s.distributions, s.values, s.intermediate_values, s.user_attrs)
        if mine != theirs:
            raise RuntimeError(f"trial {number} read back differs: {theirs} != {mine}")


def _counts(trials: list[FrozenTrial]) -> dict[str, Any]:
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {"trials": len(trials), "intermediate_values": sum(len(t.intermediate_values) for t in trials),
            "states": dict(sorted(states.items()))}


def request(app: Any, path: str) -> tuple[int, int]:
    """GET ``path`` (with its query) from the WSGI ``app``: (status code, body bytes)."""
    path_info, _, query = path.partition("?")
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path_info, "QUERY_STRING": query}
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(code: str, _headers: Any, _exc_info: Any = None) -> Callable[[bytes], Any]:
        status.append(code)
        return lambda _data: None

    body = app(environ, start_response)
    try:
        size = sum(len(chunk) for chunk in body)
    finally:
        getattr(body, "close", lambda: None)()
    return int(status[0].split()[0]), size


def _paths(study_id: int, poll_after: int) -> dict[str, str]:
    """What the study page requests on first load, and its poll."""
    return {"meta": "/api/meta", "studies": "/api/studies", "study_detail": f"/api/studies/{study_id}?after=0",
            "param_importances": f"/api/studies/{study_id}/param_importances",
            "poll": f"/api/studies/{study_id}?after={poll_after}"}


#: The peer's two settings: what its command serves, and the same app on optuna's caching storage.
PEER_SETTINGS = {
    "cli": "`optuna-dashboard <url>`: the storage its command builds from a URL, a plain RDBStorage "
           "(optuna_dashboard._storage_url.get_storage), every trial fetched from the database on each refetch",
    "cached_storage": "`optuna_dashboard.wsgi(optuna.storages.get_storage(url))` (or run_server with it): "
                      "optuna's _CachedStorage around the RDBStorage, as optuna.create_study uses it, which keeps "
                      "finished trials in memory and refetches only unfinished ones",
}


def _fresh_app(url: str, setting: str) -> tuple[Any, Any]:
    """The app for ``url`` in ``setting`` (PEER_SETTINGS) with every cache empty, and its storage."""
    import optuna_dashboard
    from optuna_dashboard import _importance
    from optuna_dashboard._storage_url import get_storage as cli_storage

    _importance.param_importance_cache.clear()  # module-level: would outlive the app
    storage = cli_storage(url) if setting == "cli" else optuna.storages.get_storage(url)
    return optuna_dashboard.wsgi(storage), storage


def _dispose(storage: Any) -> None:
    """Close the pooled connections of an app's storage (a `_CachedStorage` around an `RDBStorage`)."""
    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def _trial_list(app: Any, study_id: int, *, fresh: bool) -> None:
    """Make the app's copy of the trial list fresh (fetched just now) or expired (refetched on next use)."""
    cache = app._inmemory_cache
    with cache._trials_cache_lock:
        if fresh:
            cache._trials_last_fetched_at[study_id] = dt.datetime.now()
        else:
            cache._trials_last_fetched_at.pop(study_id, None)


@contextmanager
def _clock(into: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        into[name] = time.perf_counter() - start


def _ours_first(url: str) -> tuple[dict[str, float], Store, Any]:
    """Our first load on a fresh read-only store: (times, the store, the view)."""
    gc.collect()
    parts: dict[str, float] = {}
    start = time.perf_counter()
    with _clock(parts, "open"):
        store = open_read_only(url)
    with _clock(parts, "list_studies"):
        list_studies(store)
    with _clock(parts, "load_study"):
        view = load_study(store, ours_bench.STUDY, detail=False)
    parts["total"] = time.perf_counter() - start
    return parts, store, view


def _ours_reload(store: Store) -> dict[str, float]:
    """Our reload: the same reads on the open store."""
    gc.collect()
    parts: dict[str, float] = {}
    start = time.perf_counter()
    with _clock(parts, "list_studies"):
        list_studies(store)
    with _clock(parts, "load_study"):
        load_study(store, ours_bench.STUDY, detail=False)
    parts["total"] = time.perf_counter() - start
    return parts


def _peer_requests(app: Any, paths: dict[str, str], names: tuple[str, ...],
                   sizes: dict[str, int]) -> dict[str, float]:
    """GET ``names`` in order on ``app``: their times and the total (sizes recorded into ``sizes``)."""
    parts: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        code, size = request(app, paths[name])
        parts[name] = time.perf_counter() - start
        if code != 200:
            raise RuntimeError(f"GET {paths[name]} answered {code}")
        sizes[name] = size
    parts["total"] = sum(parts.values())
    return parts


def _peer_first(url: str, setting: str, paths: dict[str, str],
                sizes: dict[str, int]) -> tuple[dict[str, float], Any, Any]:
    """The peer's first load on a fresh app: (times, the app, its storage)."""
    gc.collect()
    start = time.perf_counter()
    app, storage = _fresh_app(url, setting)
    created = time.perf_counter() - start
    first = _peer_requests(app, paths, FIRST_LOAD, sizes)
    return {"create_app": created, **first, "total": created + first["total"]}, app, storage


def _round(our_url: str, peer_url: str, study_id: int, paths: dict[str, str],
           sizes: dict[str, int]) -> tuple[dict[str, dict[str, float]], Any]:
    """One round: ours first, the peer's first (each setting), ours reload, the peer's reload (each
    setting), then the peer's extras; and our view."""
    out: dict[str, dict[str, float]] = {}
    apps: dict[str, tuple[Any, Any]] = {}
    out["ours_first"], store, view = _ours_first(our_url)
    for setting in PEER_SETTINGS:
        times, app, storage = _peer_first(peer_url, setting, paths, sizes)
        out[f"peer_first.{setting}"], apps[setting] = times, (app, storage)

    out["ours_reload"] = _ours_reload(store)
    for setting, (app, _) in apps.items():
        gc.collect()
        _trial_list(app, study_id, fresh=False)  # more than 10 s after the last fetch
        out[f"peer_reload.{setting}"] = _peer_requests(app, paths, FIRST_LOAD, sizes)

    for setting, (app, storage) in apps.items():
        gc.collect()
        _trial_list(app, study_id, fresh=True)  # within 10 s of it
        out[f"peer_reload_within_10s.{setting}"] = _peer_requests(app, paths, FIRST_LOAD, sizes)
        gc.collect()
        _trial_list(app, study_id, fresh=False)
        out[f"peer_poll.{setting}"] = _peer_requests(app, paths, ("poll",), sizes)
        _dispose(storage)
    store.close()
    return out, view


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(values), 4), "min_s": round(min(values), 4),
            "max_s": round(max(values), 4), "runs": len(values)}


def _ratio(peer: list[float], ours: list[float]) -> dict[str, Any]:
    """The peer's median over ours, and the spread of the per-round ratios."""
    paired = [p / o for p, o in zip(peer, ours, strict=True)]
    return {"median_ratio": round(statistics.median(peer) / statistics.median(ours), 2),
            "per_round_min": round(min(paired), 2), "per_round_max": round(max(paired), 2)}


def compare(our_url: str, peer_url: str, rounds: int) -> dict[str, Any]:
    """The interleaved rounds on one backend (see the module docstring), after one warm-up round."""
    storage = optuna.storages.RDBStorage(peer_url, skip_compatibility_check=True, skip_table_creation=True)
    study_id = storage.get_study_id_from_name(STUDY)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    storage.engine.dispose()
    poll_after = next((t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)),
                      len(trials))
    peer_study = {"id": study_id, **_counts(trials), "poll_after": poll_after}
    del trials
    paths = _paths(study_id, poll_after)
    sizes: dict[str, int] = {}

    warmup, view = _round(our_url, peer_url, study_id, paths, sizes)
    print(f"  warm-up: {_brief(warmup)}", flush=True)
    done: list[dict[str, dict[str, float]]] = []
    for k in range(rounds):
        figures, _ = _round(our_url, peer_url, study_id, paths, sizes)
        done.append(figures)
        print(f"  round {k + 1}/{rounds}: {_brief(figures)}", flush=True)

    def series(case: str, part: str = "total") -> list[float]:
        return [r[case][part] for r in done]

    def requests(case: str) -> dict[str, Any]:
        return {p: {**_spread(series(case, p)), **({"path": paths[p], "bytes": sizes[p]} if p in paths else {})}
                for p in done[0][case] if p != "total"}

    ours_shape = {"trials": len(view.trials), "results": len(view.results), "full_fidelity": len(view.front.completed),
                  "front": len(view.front.entries)}
    same = (ours_shape["trials"] == peer_study["trials"]
            and ours_shape["results"] == peer_study["intermediate_values"]
            and ours_shape["full_fidelity"] == peer_study["states"].get("COMPLETE"))
    out: dict[str, Any] = {"shape": {"ours": ours_shape, "peer": peer_study, "same": same}}
    for case, key in (("first_load", "first"), ("reload", "reload")):
        ours = series(f"ours_{key}")
        peer = {setting: series(f"peer_{key}.{setting}") for setting in PEER_SETTINGS}
        strongest = min(peer, key=lambda setting: statistics.median(peer[setting]))
        out[f"ratio_{case}_peer_over_ours"] = _ratio(peer[strongest], ours)["median_ratio"]
        out[case] = {
            "strongest_peer_setting": strongest,
            "ours": {**_spread(ours), "parts": {p: _spread(series(f"ours_{key}", p)) for p in done[0][f"ours_{key}"]
                                               if p != "total"}},
            "peer": {setting: {**_spread(times), "requests": requests(f"peer_{key}.{setting}")}
                     for setting, times in peer.items()},
            "ratio_peer_over_ours": {setting: _ratio(times, ours) for setting, times in peer.items()}}
    out["peer_only"] = {setting: {
        "reload_within_10s": {**_spread(series(f"peer_reload_within_10s.{setting}")),
                              "requests": requests(f"peer_reload_within_10s.{setting}")},
        "poll": {**_spread(series(f"peer_poll.{setting}")), "path": paths["poll"], "bytes": sizes["poll"]}}
        for setting in PEER_SETTINGS}
    out["warmup_s"] = {case: round(parts["total"], 4) for case, parts in warmup.items()}
    out["rounds"] = [{case: {p: round(s, 4) for p, s in parts.items()} for case, parts in r.items()} for r in done]
    out["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    if not same:
        raise RuntimeError(f"the two studies differ in shape: {out['shape']}")
    return out


def _brief(figures: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{case} {parts['total']:.3f} s" for case, parts in figures.items())


NOTES = [
    "Ours and the peer are timed in one process, interleaved round by round (ours first load, the peer's "
    "first load in each setting, ours reload, the peer's reload in each setting), after a warm-up round; a "
    "fresh store / app for each first load, the operating system's file cache warm for both.",
    "The peer in two settings: 'cli' (what `optuna-dashboard <url>` serves: a plain RDBStorage) and "
    "'cached_storage' (the app on optuna.storages.get_storage(url): optuna's _CachedStorage keeps finished "
    "trials in memory); the headline ratios are against the faster of the two for each case.",
    "optuna-dashboard renders its charts in the browser (plotly.js, React): its server only sends JSON, so "
    "its times here are its server-side data time, not its full page; the browser's parse and draw of a "
    "10,000-trial study is not measured. Ours (Streamlit) builds its figures and table in Python after this "
    "read: the first load compared here is our read (list_studies + load_study light), the server-side data "
    "of the page; dashboard_load.py times our whole page.",
    "optuna-dashboard keeps the study's trial list in memory for 10 s (studies of 500+ trials) and asks the "
    "storage for every trial after that (a plain RDBStorage reads them all from the database, the cached "
    "storage only the unfinished ones): 'reload' is a reload more than 10 s after its last fetch (what a "
    "page polling a live study pays), 'reload_within_10s' one with the list cached; its poll serialises "
    "only the trials from the first running one on.",
    "param_importances computes PED-ANOVA per objective through optuna.importance, which reads the complete "
    "trials through the storage again (from the database with a plain RDBStorage); its result is cached "
    "(module-level, cleared for each first load) until the number of complete trials changes.",
    "The machine has 2 cores shared with other engineers' jobs (see load_average_at_start and each backend's "
    "load_average_after): figures vary from run to run by tens of per cent; the ratios, measured "
    "interleaved, vary less.",
]


def _dashboard_version() -> str:
    import optuna_dashboard

    return str(optuna_dashboard.__version__)


def _fill_ours(url: str, trials: int) -> dict[str, Any]:
    store = ours_bench._fast_writer(url)
    try:
        return ours_bench.fill(store, trials)
    finally:
        store.close()


def _sqlite_urls(folder: Path, trials: int, fill_api: bool) -> tuple[str, str, dict[str, Any]]:
    """Our and the peer's SQLite stores in ``folder`` (``ours.db``, ``peer.db``), filled unless they exist."""
    written: dict[str, Any] = {}
    urls = []
    for side, filler in (("ours", lambda u: _fill_ours(u, trials)),
                         ("peer", lambda u: fill(u, trials, api=fill_api))):
        path = folder / f"{side}.db"
        url = f"sqlite:///{path}"
        if path.exists():
            written[side] = {"reused": str(path)}
        else:
            print(f"sqlite: filling {side}, {trials} trials ...", flush=True)
            partial = folder / f"{side}.db.part"
            partial.unlink(missing_ok=True)
            written[side] = filler(f"sqlite:///{partial}")
            partial.rename(path)
        urls.append(url)
        print(f"sqlite {side}: {written[side]}", flush=True)
    return urls[0], urls[1], written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--pg-trials", type=int, help="the PostgreSQL studies' size (default: --trials)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up (at least 3)")
    parser.add_argument("--quick", action="store_true", help="200 trials, 3 rounds: a smoke test")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--fill-api", action="store_true", help="fill the peer's study through Study.add_trials")
    parser.add_argument("--sqlite-dir", type=Path, help="keep the SQLite stores here, or reuse them if there")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dashboard_peer.json")
    args = parser.parse_args(argv)
    # Everything imported so far (torch, optuna, pandas) is long-lived: frozen, the gc.collect() before each timed
    # step walks only what the run itself made (0.2 s a collect otherwise, 40+ of them, none of it timed).
    gc.freeze()
    # A stopped run still drops its PostgreSQL schemas (pg_schema's finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    trials, rounds, out = args.trials, args.rounds, args.out
    if args.quick:
        trials, rounds = 200, 3
        out = out.with_name(out.stem + "_quick" + out.suffix)
    pg_trials = trials if args.quick or args.pg_trials is None else args.pg_trials
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    report: dict[str, Any] = {
        "what": "our dashboard's study-page data (autopeft.dashboard.data) against optuna-dashboard 0.21.0's JSON "
                "API behind its study page (in-process WSGI), the same study in each tool's store, interleaved "
                "in one process",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(), "optuna": optuna.__version__, "optuna_dashboard": _dashboard_version()},
        "quick": args.quick,
        "sizes": {"trials": trials, "results": trials * sum(DEPTHS) // len(DEPTHS), "rungs": RUNGS,
                  "objectives": ["score (maximize)", "trainable_params (minimize)"],
                  **({"postgresql_trials": pg_trials} if pg_trials != trials else {})},
        "method": f"per backend: one warm-up round, then {rounds} rounds of ours first load, peer first load, "
                  f"ours reload, peer reload (then the peer's reload within 10 s and poll); median and min-max "
                  f"of each; ratio = peer median / our median (above 1: ours faster); see the docstring",
        "rounds": rounds, "notes": NOTES, "summary": {}, "backends": {}}

    def record(backend: str, figures: dict[str, Any]) -> None:
        report["backends"][backend] = figures
        report["summary"][backend] = {"trials": figures["shape"]["ours"]["trials"]}
        report["summary"][backend] |= {
            **{f"{case}_median_s": {"ours": figures[case]["ours"]["median_s"],
                                    **{f"peer_{name}": x["median_s"] for name, x in figures[case]["peer"].items()},
                                    "strongest_peer_setting": figures[case]["strongest_peer_setting"]}
               for case in ("first_load", "reload")},
            "ratio_first_load_peer_over_ours": figures["ratio_first_load_peer_over_ours"],
            "ratio_reload_peer_over_ours": figures["ratio_reload_peer_over_ours"]}
        _print(backend, figures)
        write()

    def write() -> None:  # after each backend: a stopped run keeps what it measured
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")

    with ExitStack() as stack:
        if args.no_sqlite:
            report["backends"]["sqlite"] = {"skipped": "--no-sqlite"}
        else:
            folder = args.sqlite_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            folder.mkdir(parents=True, exist_ok=True)
            our_url, peer_url, written = _sqlite_urls(folder, trials, args.fill_api)
            record("sqlite", {"written": written, **compare(our_url, peer_url, rounds)})

    reachable, detail = (False, "--no-pg") if args.no_pg else pg_reachable(PG_URL)
    if reachable:
        with pg_schema(PG_URL, "autopeft_bench") as our_url, pg_schema(PG_URL, "optuna_bench") as peer_url:
            print(f"postgresql {detail}: filling ours, {pg_trials} trials ...", flush=True)
            written = {"ours": _fill_ours(our_url, pg_trials)}
            print(f"postgresql ours: {written['ours']}\npostgresql: filling peer ...", flush=True)
            written["peer"] = fill(peer_url, pg_trials, api=args.fill_api)
            print(f"postgresql peer: {written['peer']}", flush=True)
            record("postgresql", {"server": detail, "written": written, **compare(our_url, peer_url, rounds)})
    else:
        report["backends"]["postgresql"] = {"skipped": detail}
        print(f"postgresql skipped: {detail}")
    write()
    print(f"-> {out}")
    return 0


def _print(backend: str, figures: dict[str, Any]) -> None:
    for case in ("first_load", "reload"):
        f = figures[case]
        ours = f["ours"]
        print(f"{backend:>10} {case:<10} ours {ours['median_s']:.3f} s ({ours['min_s']:.3f}-{ours['max_s']:.3f}) "
              f"over {ours['runs']} rounds")
        for setting, peer in f["peer"].items():
            print(f"{backend:>10} {case:<10} peer {setting:<14} {peer['median_s']:.3f} s ({peer['min_s']:.3f}-"
                  f"{peer['max_s']:.3f}), peer/ours {f['ratio_peer_over_ours'][setting]['median_ratio']:.1f}x")
            for name, r in peer["requests"].items():
                size = f", {r['bytes'] / 1e6:.2f} MB" if "bytes" in r else ""
                print(f"{backend:>10}     {name:<17} {r['median_s']:.3f} s{size}")
    for setting, extra in figures["peer_only"].items():
        print(f"{backend:>10} peer {setting}: reload within 10 s {extra['reload_within_10s']['median_s']:.3f} s, "
              f"poll {extra['poll']['median_s']:.3f} s ({extra['poll']['bytes'] / 1e6:.2f} MB)")
    print(f"{backend:>10} ratio peer/ours (strongest setting): first load {figures['ratio_first_load_peer_over_ours']}"
          f", reload {figures['ratio_reload_peer_over_ours']}")


if __name__ == "__main__":
    raise SystemExit(main())
