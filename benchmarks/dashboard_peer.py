"""The peer of `dashboard_load.py`: how fast optuna-dashboard 0.21.0 serves the data of its study page, for
an Optuna study of the same shape (10,000 trials, 40,000 intermediate values), on the same machine.

The study: one Optuna study in an RDB storage (SQLite always; PostgreSQL too when the local server answers,
in a throwaway schema dropped afterwards), directions (maximize, minimize), N trials with the parameters of
our `mixed` space on six layers (a log-scaled learning rate; per layer a categorical method and, depending
on it, a log-scaled int rank, size or prefix length: `optuna.distributions`), as `dashboard_load.py`'s
Hyperband study has them: per ten trials three stop at the first rung, two at the second, one each at the
third, fourth and eighth (PRUNED, Optuna has no paused state) and two reach the ninth, full fidelity
(COMPLETE, with both objective values): four intermediate values a trial on average (`trial.report` at
fidelities 512 ... 131072, eta 2), one trial in fifty FAIL, the last three RUNNING, a few user attrs. The
trials are built with `optuna.trial.create_trial` and written in chunks of 500, in bulk with optuna's own
ORM models (`Study.add_trials` writes the same rows at about 0.1 s a trial here: `--fill-api` uses it),
then read back and compared with what was built. The fill time is printed; it is not what is measured.

Then what the study page of optuna-dashboard requests from its server (`optuna_dashboard.wsgi(url)`, the
Bottle WSGI app its CLI serves, called in this process with a WSGI environ, no sockets): on first load
`GET /api/meta`, `GET /api/studies`, `GET /api/studies/<id>?after=0` (every trial, the Pareto front, the
search space) and `GET /api/studies/<id>/param_importances` (PED-ANOVA per objective); then the page polls
`GET /api/studies/<id>?after=<first running trial>` every few seconds. Figures per request:
- ``cold``: the first call on a fresh app (new storage, empty caches, the module's importance cache
  cleared): a first visit after the server starts;
- ``warm``: the median of R calls while the app's trial list is fresh (it refetches every trial from the
  storage when its copy is older than 10 s, for studies of 500+ trials): a reload within 10 s;
- ``refetch`` (study detail and poll): the median of R calls with that copy expired (the other caches
  warm): a reload, or a poll, more than 10 s after the last fetch, what a page polling a live study pays.
``first_load`` adds up the four first-load requests: cold, and a reload after 10 s. Response sizes are
reported too. optuna-dashboard draws its charts in the browser (plotly.js), while ours builds its figures
in Python: compare its API time with our `load_study` light (the server-side data), not with our whole page.

Full run:  python benchmarks/dashboard_peer.py            (10,000 trials, 7 runs)
CI smoke:  python benchmarks/dashboard_peer.py --quick    (200 trials, 2 runs)
Needs the bench extra: pip install -c constraints.txt -e '.[bench]'  (optuna-dashboard==0.21.0)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from pg_scratch import machine, pg_reachable, pg_schema  # benchmarks/, the script's folder

ROOT = Path(__file__).resolve().parents[1]
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
#: The requests of the study page's first load, in order, and those timed with the trial list expired too
#: (the others read it only when the study detail has just fetched it, or not at all).
FIRST_LOAD = ("meta", "studies", "study_detail", "param_importances")
REFETCHED = ("study_detail", "poll")


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


def _timed_get(app: Any, path: str, before: Callable[[], None] = lambda: None) -> tuple[float, int]:
    before()
    start = time.perf_counter()
    code, size = request(app, path)
    seconds = time.perf_counter() - start
    if code != 200:
        raise RuntimeError(f"GET {path} answered {code}")
    return seconds, size


def _fresh_app(url: str) -> Any:
    """The app optuna-dashboard's CLI serves for ``url``, with every cache empty."""
    import optuna_dashboard
    from optuna_dashboard import _importance

    _importance.param_importance_cache.clear()  # module-level: would outlive the app
    return optuna_dashboard.wsgi(url)


def measure(url: str, runs: int) -> dict[str, Any]:
    """Cold, warm and refetch figures of each request of the study page (see the module docstring)."""
    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    study_id = storage.get_study_id_from_name(STUDY)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    storage.engine.dispose()
    first_running = next((t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)),
                         len(trials))
    paths = _paths(study_id, first_running)
    start = time.perf_counter()
    app = _fresh_app(url)
    out: dict[str, Any] = {"create_app_s": round(time.perf_counter() - start, 4), "requests": {}}
    for name, path in paths.items():  # in the page's order, each on the caches the ones before filled
        out["requests"][name] = _request_figures(app, study_id, path, runs, refetch=name in REFETCHED)
        print(f"  {name}: {out['requests'][name]}", flush=True)
    out["first_load"] = _first_load(out["requests"])
    out["study"] = {"id": study_id, **_counts(trials), "poll_after": first_running}
    out["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    return out


def _request_figures(app: Any, study_id: int, path: str, runs: int, *, refetch: bool) -> dict[str, Any]:
    """Cold (the app's first call of ``path``), warm and, with ``refetch``, refetch (see the docstring)."""
    def fresh() -> None:
        _trial_list(app, study_id, fresh=True)

    def expired() -> None:
        _trial_list(app, study_id, fresh=False)

    cold, size = _timed_get(app, path, fresh)  # fresh: fetched by the request before it, if any
    warm = [_timed_get(app, path, fresh)[0] for _ in range(runs)]
    out = {"path": path, "bytes": size, "cold_s": round(cold, 4), "warm_median_s": round(statistics.median(warm), 4),
           "warm_max_s": round(max(warm), 4), "runs": runs}
    if refetch:
        again = [_timed_get(app, path, expired)[0] for _ in range(runs)]
        out |= {"refetch_median_s": round(statistics.median(again), 4), "refetch_max_s": round(max(again), 4)}
    return out


def _trial_list(app: Any, study_id: int, *, fresh: bool) -> None:
    """Make the app's copy of the trial list fresh (fetched just now) or expired (refetched on next use)."""
    cache = app._inmemory_cache
    with cache._trials_cache_lock:
        if fresh:
            cache._trials_last_fetched_at[study_id] = dt.datetime.now()
        else:
            cache._trials_last_fetched_at.pop(study_id, None)


def _first_load(requests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The page's four first-load requests in sequence: ``cold``, the sum of their cold calls (made in that
    order on the fresh app, so each found what the ones before cached); ``reload``, a reload more than 10 s
    after the last fetch: the study detail refetches the trial list, the others find their caches warm."""
    first = FIRST_LOAD
    cold = sum(requests[name]["cold_s"] for name in first)
    reload = sum(requests[name]["refetch_median_s" if name == "study_detail" else "warm_median_s"] for name in first)
    return {"requests": list(first), "cold_s": round(cold, 4), "reload_s": round(reload, 4),
            "bytes": sum(requests[name]["bytes"] for name in first)}


def _ours(path: Path) -> dict[str, Any]:
    """Our figures from a dashboard_load.py report (by default the last full run's), for comparison: they
    are not measured here."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {"from": str(path), "when": report.get("when"), "cpu": report.get("machine", {}).get("cpu")}
    for backend, figures in report.get("backends", {}).items():
        if "load_study" in figures:
            out[backend] = {"load_study_light_median_s": figures["load_study"]["median_s"],
                            **{f"{page}_{k}": v for page, f in figures.get("pages", {}).items()
                               if isinstance(f, dict) for k, v in f.items() if k in ("cold_s", "warm_median_s")}}
    return out


NOTES = [
    "optuna-dashboard renders its charts in the browser (plotly.js, React): its server only sends JSON, so "
    "the times here are its server-side data time, not its full page; the browser's parse and draw of a "
    "10,000-trial study is not measured. Ours (Streamlit) builds its figures and table in Python: compare "
    "this API time with our load_study light (our server-side data), and our full page (study_page cold / "
    "warm in dashboard_load.json) with this plus the browser's drawing.",
    "optuna-dashboard keeps the study's trial list in memory for 10 s (studies of 500+ trials) and refetches "
    "every trial from the storage after that, so 'refetch' is what a live page polling every 10 s pays and "
    "'warm' what a reload within 10 s pays; its study detail serialises all trials after `after` (0 on "
    "first load), its poll only those from the first running trial on, but still refetches every trial.",
    "Called in-process through the WSGI interface (no HTTP server, no sockets), one request at a time.",
    "param_importances computes PED-ANOVA per objective through optuna.importance, which reads the study's "
    "complete trials from the storage again (Study.get_trials), beside the dashboard's cached trial list; "
    "its result is cached until the number of complete trials changes.",
    "The machine has 2 cores shared with other engineers' jobs (see load_average_at_start): figures vary "
    "from run to run by tens of per cent.",
]


def _dashboard_version() -> str:
    import optuna_dashboard

    return str(optuna_dashboard.__version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200 trials, 2 runs: a smoke test")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--fill-api", action="store_true", help="fill through Study.add_trials (slow)")
    parser.add_argument("--sqlite-file", type=Path, help="fill this SQLite file (kept), or reuse it when it exists")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dashboard_peer.json")
    parser.add_argument("--ours", type=Path, default=ROOT / "benchmarks/results/dashboard_load.json",
                        help="the dashboard_load.py report whose figures the summary quotes (not measured here)")
    args = parser.parse_args(argv)
    trials, runs, out = args.trials, args.runs, args.out
    if args.quick:
        trials, runs = 200, 2
        out = out.with_name(out.stem + "_quick" + out.suffix)

    report: dict[str, Any] = {
        "what": "optuna-dashboard 0.21.0's JSON API behind its study page (the peer of dashboard_load.py), on "
                "an Optuna RDB study of the same shape, called in-process through its WSGI app",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine(), "optuna": optuna.__version__, "optuna_dashboard": _dashboard_version()},
        "quick": args.quick,
        "sizes": {"trials": trials, "intermediate_values": trials * sum(DEPTHS) // len(DEPTHS), "rungs": RUNGS,
                  "objectives": ["score (maximize)", "trainable_params (minimize)"]},
        "method": f"per request: cold = first call on a fresh app; warm = median of {runs} calls with the app's "
                  f"trial list fresh; refetch = median of {runs} calls with it expired (see the docstring); "
                  f"first_load = the four first-load requests in sequence",
        "notes": NOTES, "ours": _ours(args.ours), "backends": {}}

    with tempfile.TemporaryDirectory() as tmp:
        path = args.sqlite_file or Path(tmp) / "peer.db"
        url = f"sqlite:///{path}"
        if path.exists():
            written: dict[str, Any] = {"reused": str(path)}
        else:
            print(f"sqlite: filling {trials} trials ...", flush=True)
            written = fill(url, trials, api=args.fill_api)
        print(f"sqlite: {written}", flush=True)
        report["backends"]["sqlite"] = {"written": written, **measure(url, runs)}
        _print("sqlite", report["backends"]["sqlite"])

    reachable, detail = (False, "--no-pg") if args.no_pg else pg_reachable(PG_URL)
    if reachable:
        with pg_schema(PG_URL, "optuna_bench") as url:
            print(f"postgresql {detail}: filling {trials} trials ...", flush=True)
            written = fill(url, trials, api=args.fill_api)
            print(f"postgresql: {written}", flush=True)
            report["backends"]["postgresql"] = {"server": detail, "written": written, **measure(url, runs)}
            _print("postgresql", report["backends"]["postgresql"])
    else:
        report["backends"]["postgresql"] = {"skipped": detail}
        print(f"postgresql skipped: {detail}")

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")
    return 0


def _print(backend: str, figures: dict[str, Any]) -> None:
    print(f"{backend:>10} study {figures['study']}; create_app {figures['create_app_s']:.3f} s")
    for name, f in figures["requests"].items():
        refetch = f", refetch {f['refetch_median_s']:.3f} s" if "refetch_median_s" in f else ""
        print(f"{backend:>10} {name:<17} cold {f['cold_s']:.3f} s, warm {f['warm_median_s']:.3f} s{refetch} "
              f"(medians of {f['runs']}), {f['bytes'] / 1e6:.2f} MB")
    first = figures["first_load"]
    print(f"{backend:>10} first load (4 requests, {first['bytes'] / 1e6:.2f} MB): cold {first['cold_s']:.3f} s, "
          f"reload after 10 s {first['reload_s']:.3f} s")


if __name__ == "__main__":
    raise SystemExit(main())
