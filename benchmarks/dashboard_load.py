"""How fast the dashboard reads and draws a large study: its reads (`list_studies`, `load_study` light and
detailed, `study_version`) and its study and trial pages, on 10,000 trials.

The store is filled through the `Store` API, as a driver fills it: one Hyperband study of N trials of the
`mixed` search space on MiniLM-L6's six layers (their configurations and compiled plans), 4N results (each
with the metrics a real trial reports), one attempt per result, a Pareto snapshot after every full-fidelity
result, and a few trials still running at the end. Fidelity 512 to 131072 examples with eta 2 (nine
rungs): per ten trials, three stop at the first rung, two at the second, one each at the third and fourth,
one is paused at the eighth and three reach the ninth (full fidelity), so every trial averages four
results; one trial in fifty (one that stopped at the first rung) has failed instead. The fill skips the
disk flush of each commit (see `_fast_writer`): the rows are the same, only written sooner.

Then, on a fresh read-only store (as the dashboard opens it), after one warm-up call each: the median of
R timed calls of each function, with the number of SQL statements each call sends and, for `load_study`,
how its time splits between the store's bulk read and building the views. SQLite always; PostgreSQL too
when the local server answers (a throwaway schema, dropped afterwards). Then the study page and a trial page
as Streamlit runs them (`measure_pages`): cold (every cache cleared) and warm (a rerun).

Full run:  python benchmarks/dashboard_load.py            (10,000 trials, 40,000 results, 7 runs)
           (--sqlite-file F / --pg-schema S keep the filled stores for the next run, which reuses them)
CI smoke:  python benchmarks/dashboard_load.py --quick    (200 trials, 800 results, 2 runs)
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pg_scratch import machine, pg_reachable, pg_schema  # noqa: E402 (benchmarks/, the script's folder)
from sqlalchemy import event  # noqa: E402

from autopeft.dashboard.data import list_studies, load_study, open_read_only, study_version  # noqa: E402
from autopeft.engine.definition import StudyDefinition, make_objectives  # noqa: E402
from autopeft.search.pareto import hypervolume, pareto_front_mask, reference_point, to_minimization  # noqa: E402
from autopeft.search.rungs import rung_levels  # noqa: E402
from autopeft.status import AttemptOutcome, TrialStatus  # noqa: E402
from autopeft.store import Store  # noqa: E402

MIN_F, MAX_F, ETA = 512, 131072, 2.0
BASE_PARAMS = 22_713_216  # MiniLM-L6 with a classification head
#: Rungs reached by each of ten consecutive trials (mean 4: the 4N results of the issue's benchmark).
DEPTHS = (1, 1, 1, 2, 2, 3, 4, 8, 9, 9)
PG_URL = os.environ.get("AUTOPEFT_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STUDY = "bench"


def _configs(n: int, seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` configurations of the mixed space with their compiled plans (what a real study stores)."""
    from autopeft.search.history import History
    from autopeft.search.samplers import make_sampler
    from autopeft.space.space import load_space

    space = load_space(ROOT / "search_spaces/mixed.yaml")
    dims = space.dimensions(6)
    sampler = make_sampler("random", dims, make_objectives(("score", "trainable_params"), base_params=BASE_PARAMS),
                           seed=seed)
    distinct = [dict(c) for c in sampler.propose(min(n, 500), History())]
    out = []
    for i in range(n):
        config = distinct[i % len(distinct)]
        out.append((config, space.compile(config, 6).model_dump(mode="json", exclude_none=True)))
    return out


def _objectives(config: dict[str, Any], fidelity: int, number: int) -> dict[str, float]:
    params = 0.0
    for key, value in config.items():
        if key.endswith((".rank", ".size", ".length")):
            params += 768.0 * float(value)
    quality = min(0.93, 0.55 + params / 2e5) - 0.02 * ((number * 7919) % 13) / 13
    return {"score": quality * (1.0 - 0.4 * (1.0 - fidelity / MAX_F) ** 2), "trainable_params": 1536.0 + params}


def _metrics(objectives: dict[str, float], fidelity: int) -> dict[str, Any]:
    """What `engine.worker` stores: the trial job's `TrialResult` fields."""
    return {"status": "complete", "error": None, "fidelity": fidelity, "fidelity_unit": "examples",
            "steps": fidelity // 32, "score": objectives["score"],
            "metrics": {"accuracy": objectives["score"], "loss": 0.7 - 0.3 * objectives["score"]},
            "dev_metrics": None, "train_loss": 0.45, "trainable_params": int(objectives["trainable_params"]),
            "trainable_share": objectives["trainable_params"] / BASE_PARAMS, "train_seconds": fidelity / 180.0,
            "examples_per_second": 180.0, "peak_memory_mb": 812.5, "trial_dir": "autopeft_runs/bench/trial_x"}


def fill(store: Store, trials: int, *, seed: int = 0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One study as a Hyperband driver writes it, through the Store API; returns what was written."""
    levels = rung_levels(MIN_F, MAX_F, ETA)
    objectives = make_objectives(("score", "trainable_params"), base_params=BASE_PARAMS)
    definition = StudyDefinition(space={"name": "mixed"}, recipe={"fidelity": {"min": MIN_F, "max": MAX_F}},
                                 objectives=objectives, recipe_dir=".",
                                 options={"strategy": "hyperband", "seed": seed, "eta": ETA, "budget": None})
    store.create_study(STUDY, space=definition.space_json(), recipe=definition.recipe_json(),
                       objectives=definition.objectives_json(), strategy="hyperband", seed=seed)
    ref = reference_point(objectives)
    directions = [o.direction for o in objectives]
    front: list[tuple[int, list[float]]] = []  # (trial id, raw objective values)
    counts: dict[str, Any] = {"trials": 0, "results": 0, "attempts": 0, "snapshots": 0}
    started = time.perf_counter()
    for number, (config, plan) in enumerate(_configs(trials, seed)):
        trial = store.create_trial(STUDY, config, plan, bracket=0)
        counts["trials"] += 1
        depth = DEPTHS[number % len(DEPTHS)]
        running = number >= trials - 3  # the last few are still training
        failed = depth <= 2 and number % 50 == 0
        previous = None
        for rung, fidelity in enumerate(levels[:depth]):
            attempt = store.start_attempt(trial.id, fidelity, resume_from=previous)
            counts["attempts"] += 1
            if running and rung == depth - 1:
                break
            values = _objectives(config, fidelity, number)
            store.record_result(trial.id, fidelity, values, _metrics(values, fidelity))
            counts["results"] += 1
            store.end_attempt(attempt.id, AttemptOutcome.REPORTED, worker=f"bench:{number % 4}")
            previous = fidelity
            if fidelity == MAX_F:
                store.set_trial_status(trial.id, TrialStatus.COMPLETE)
                candidates = [*front, (trial.id, [values[o.name] for o in objectives])]
                points = to_minimization([v for _, v in candidates], directions)
                mask = pareto_front_mask(points)
                front = [c for c, keep in zip(candidates, mask, strict=True) if keep]
                store.add_pareto_snapshot(STUDY, [i for i, _ in front], hypervolume(points[mask], ref))
                counts["snapshots"] += 1
            elif rung < depth - 1:
                store.set_trial_status(trial.id, TrialStatus.PAUSED)
        if running:
            continue
        if failed:
            store.set_trial_status(trial.id, TrialStatus.FAILED, error="RuntimeError: CUDA out of memory")
        elif depth == 8:
            store.set_trial_status(trial.id, TrialStatus.PAUSED)
        elif depth < len(levels):
            store.set_trial_status(trial.id, TrialStatus.PRUNED)
        if (number + 1) % 1000 == 0:
            log(f"  filled {number + 1}/{trials} trials ({time.perf_counter() - started:.0f} s)")
    counts["fill_seconds"] = round(time.perf_counter() - started, 1)
    return counts


def _fast_writer(url: str) -> Store:
    """A store for filling: every write through the Store API, but commits not flushed to disk one by one
    (SQLite ``synchronous = OFF``, PostgreSQL ``synchronous_commit = off``): what is written is the same,
    it is only written sooner (the fill is not what is measured)."""
    store = Store(url)

    @event.listens_for(store._engine, "connect")  # before the store's first connection
    def _no_sync(dbapi_conn: Any, _record: Any) -> None:
        if store._engine.dialect.name == "sqlite":
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA synchronous = OFF")
            cursor.close()
        else:
            autocommit = dbapi_conn.autocommit
            dbapi_conn.autocommit = True
            dbapi_conn.execute("SET synchronous_commit = off")
            dbapi_conn.autocommit = autocommit

    return store


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements ``store`` sends inside the block."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = store._engine  # the benchmark counts the store's queries
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def timed(fn: Callable[[], Any], runs: int) -> dict[str, Any]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "runs": runs}


def measure(url: str, runs: int, *, profile: bool = False) -> dict[str, Any]:
    """Time the three reads on a fresh read-only store at ``url``."""
    store = open_read_only(url)
    cold_start = time.perf_counter()
    view = load_study(store, STUDY)  # the first call: connect, check the schema, read
    cold = time.perf_counter() - cold_start
    out: dict[str, Any] = {"load_study_first_call_s": round(cold, 4)}
    for name, fn in (("list_studies", lambda: list_studies(store)),
                     ("load_study", lambda: load_study(store, STUDY, detail=False)),
                     ("load_study_detail", lambda: load_study(store, STUDY)),
                     ("study_version", lambda: study_version(store, STUDY))):
        with statements(store) as sent:
            fn()
        out[name] = {**timed(fn, runs), "statements": len(sent)}
    # Where load_study's time goes: the store's one-transaction bulk read, then building the views.
    top = view.max_fidelity
    out["load_study"]["store_read_s"] = timed(
        lambda: store.read_study(STUDY, metrics_at=top, open_attempts_only=True), runs)["median_s"]
    out["load_study"]["views_s"] = round(out["load_study"]["median_s"] - out["load_study"]["store_read_s"], 4)
    out["view"] = {"trials": len(view.trials), "results": len(view.results), "attempts": len(view.attempts),
                   "snapshots": len(view.snapshots), "front": len(view.front.entries),
                   "full_fidelity": len(view.front.completed), "rungs": list(view.rungs),
                   "budget_used": round(view.budget_used, 3)}
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        load_study(store, STUDY, detail=False)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        out["profile"] = text.getvalue()
    store.close()
    return out


def measure_pages(url: str, runs: int) -> dict[str, Any]:
    """Time the study page and a trial page as Streamlit runs them (AppTest, in this process).

    Timed is the page's own function (`render_study`, `render_trial`: the data read, the figures and every
    element), not AppTest's start-up around it. ``first_visit``: the first run after every Streamlit cache
    is cleared (the server's first page of the study: it also opens the store's connection pool);
    ``cold``: the median of ``runs`` runs each after the study's cached data and figures are dropped (what
    a page costs after a new result: a new version reads and draws anew, on the open store); ``warm``: the
    median of ``runs`` reruns with everything cached (a live refresh with no new result, a widget click).
    The trial page is timed for a full-fidelity trial of the front.
    """
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from autopeft.dashboard import page_study, page_trial, ui

    app = ROOT / "autopeft" / "dashboard" / "app.py"
    os.environ["AUTOPEFT_STORAGE"] = url
    spent: list[float] = []

    def timing(render: Callable[..., None]) -> Callable[..., None]:
        def timed_render(*args: Any) -> None:
            start = time.perf_counter()
            try:
                render(*args)
            finally:
                spent.append(time.perf_counter() - start)
        return timed_render

    def page(**params: str) -> float:
        spent.clear()
        at = AppTest.from_file(str(app), default_timeout=600)
        for key, value in params.items():
            at.query_params[key] = value
        at.run()
        if at.exception or at.error:
            raise RuntimeError(f"page {params} failed: {at.exception or at.error[0].value}")
        return spent[-1] if spent else float("nan")  # nan: a page that is not timed (the studies page)

    originals = page_study.render_study, page_trial.render_trial
    page_study.render_study, page_trial.render_trial = timing(originals[0]), timing(originals[1])
    try:
        view = load_study(open_read_only(url), STUDY, detail=False)
        trial = str(view.front.entries[0].number)
        out: dict[str, Any] = {}
        page()  # the studies page once: Streamlit, plotly and pandas imported before anything is timed
        # A server's first export imports torch and transformers once (the peft config is built from the
        # model's architecture); that one-off cost is reported apart, not in the trial page's time.
        start = time.perf_counter()
        import autopeft.export.study_export  # noqa: F401
        out["export_import_s"] = round(time.perf_counter() - start, 3)
        for name, params in (("study_page", {"study": STUDY}), ("trial_page", {"study": STUDY, "trial": trial})):
            st.cache_data.clear()
            st.cache_resource.clear()
            first = page(**params)
            warm = [page(**params) for _ in range(runs)]
            cold = []
            for _ in range(runs):  # as after a new result: the study's data and figures go, the store stays
                for cached in (ui._version, ui._study, ui._studies, ui._drawn, page_trial._texts):
                    cached.clear()
                cold.append(page(**params))
            out[name] = {"first_visit_s": round(first, 4), "cold_median_s": round(statistics.median(cold), 4),
                         "cold_max_s": round(max(cold), 4), "warm_median_s": round(statistics.median(warm), 4),
                         "warm_max_s": round(max(warm), 4), "runs": runs}
        return out
    finally:
        page_study.render_study, page_trial.render_trial = originals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200 trials, 2 runs: a smoke test")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of one load_study to the JSON")
    parser.add_argument("--sqlite-file", type=Path, help="fill this SQLite file (kept), or reuse it when it exists")
    parser.add_argument("--pg-schema", help="fill this PostgreSQL schema (kept), or reuse its study when it has one")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/dashboard_load.json")
    args = parser.parse_args(argv)
    trials, runs, out = args.trials, args.runs, args.out
    if args.quick:
        trials, runs = 200, 2
        out = out.with_name(out.stem + "_quick" + out.suffix)

    report: dict[str, Any] = {
        "what": "the dashboard's reads (autopeft.dashboard.data) and its study and trial pages (AppTest) on one "
                "study filled through the Store API, read through a read-only store",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "quick": args.quick, "sizes": {"trials": trials, "results": trials * sum(DEPTHS) // len(DEPTHS),
                                       "rungs": rung_levels(MIN_F, MAX_F, ETA)},
        "method": f"reads: median of {runs} timed calls after one warm-up call, each function in turn, one process; "
                  f"pages: see measure_pages (cold = every cache cleared, warm = median of {runs} reruns)",
        "target": "the study page of 10,000 trials and 40,000 results rendered in under 2 s", "backends": {}}

    with tempfile.TemporaryDirectory() as tmp:
        path = args.sqlite_file or Path(tmp) / "bench.db"
        url = f"sqlite:///{path}"
        written = _filled(url, trials, "sqlite", reused=str(path) if path.exists() else None)
        report["backends"]["sqlite"] = {"written": written, **measure(url, runs, profile=args.profile),
                                        "pages": measure_pages(url, runs)}
        _print("sqlite", report["backends"]["sqlite"])

    reachable, detail = (False, "--no-pg") if args.no_pg else pg_reachable(PG_URL)
    if reachable:
        with pg_schema(PG_URL, "autopeft_bench", keep=args.pg_schema) as url:
            written = _filled(url, trials, f"postgresql {detail}",
                              reused=f"schema {args.pg_schema}" if args.pg_schema and _has_study(url) else None)
            report["backends"]["postgresql"] = {"server": detail, "written": written,
                                                **measure(url, runs, profile=args.profile),
                                                "pages": measure_pages(url, runs)}
            _print("postgresql", report["backends"]["postgresql"])
    else:
        report["backends"]["postgresql"] = {"skipped": detail}
        print(f"postgresql skipped: {detail}")

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")
    return 0


def _has_study(url: str) -> bool:
    try:
        return STUDY in {s.name for s in Store(url, read_only=True).list_studies()}
    except Exception:  # an empty schema: no tables yet
        return False


def _filled(url: str, trials: int, label: str, *, reused: str | None) -> dict[str, Any]:
    """Fill the store at ``url`` with the benchmark study, or count what an earlier run left there (``reused``)."""
    if reused is not None:
        contents = Store(url, read_only=True).read_study(STUDY)
        written: dict[str, Any] = {"trials": len(contents.trials), "results": len(contents.results),
                                   "attempts": len(contents.attempts), "snapshots": len(contents.snapshots),
                                   "reused": reused}
    else:
        print(f"{label}: filling {trials} trials ...", flush=True)
        store = _fast_writer(url)
        written = fill(store, trials)
        store.close()
    print(f"{label}: {written}", flush=True)
    return written


def _print(backend: str, figures: dict[str, Any]) -> None:
    for name in ("list_studies", "load_study", "load_study_detail", "study_version"):
        f = figures[name]
        extra = (f" (store read {f['store_read_s']:.3f} s, views {f['views_s']:.3f} s)" if name == "load_study"
                 else "")
        print(f"{backend:>10} {name:<14} median {f['median_s']:.3f} s over {f['runs']} runs, "
              f"{f['statements']} statements{extra}")
    print(f"{backend:>10} load_study first call {figures['load_study_first_call_s']:.3f} s; view {figures['view']}")
    for name, f in figures.get("pages", {}).items():
        if not isinstance(f, dict):
            print(f"{backend:>10} {name:<14} {f}")
            continue
        print(f"{backend:>10} {name:<14} first visit {f['first_visit_s']:.3f} s, cold median "
              f"{f['cold_median_s']:.3f} s, warm median {f['warm_median_s']:.3f} s over {f['runs']} runs")
    if "profile" in figures:
        print(figures["profile"])


if __name__ == "__main__":
    raise SystemExit(main())
