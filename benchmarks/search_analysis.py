"""The report of `benchmarks/search_efficiency.py`: anytime hypervolume, compute to reach the target, plots.

The target of a problem is the best peer's final hypervolume; `summarise` reads, per method, the compute
each seed needed to reach it, and `compute_ratio_vs_best_peer`.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.search_methods import DEFAULT_OURS, OUR_VARIANTS, OURS, SETTINGS, VARIANTS  # noqa: E402
from benchmarks.search_problem import Problem  # noqa: E402

GRID_POINTS = 121  # where the anytime curves are read, from 0 to the budget


def hv_at(events: Sequence[Sequence[float]], compute: float) -> float:
    """The hypervolume of a run's front after ``compute`` full-trial equivalents."""
    hv = 0.0
    for c, h, *_ in events:
        if c > compute + 1e-9:
            break
        hv = h
    return hv


def first_reach(events: Sequence[Sequence[float]], target: float) -> tuple[float, float] | None:
    """(compute, seconds) of the first event whose hypervolume reaches ``target``; None if none does."""
    for c, h, s in events:
        if h >= target - 1e-12:
            return c, s
    return None


def median_or_none(values: Sequence[float]) -> float | None:
    """Median where a run that never reached counts as infinite; None when the median is infinite."""
    m = statistics.median(values)
    return None if math.isinf(m) else m


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    import numpy as np

    q = np.percentile(np.array(values, dtype=float), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def summarise(problem: Problem, budget: float, runs: dict[str, list[dict[str, Any]]],
              skipped: Mapping[str, str]) -> dict[str, Any]:
    """The problem's section of the report: per method figures, the target and the compute ratio."""
    import numpy as np

    grid = [budget * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
    methods: dict[str, dict[str, Any]] = {}
    for name, seeds in runs.items():
        finals = [hv_at(r["events"], budget) for r in seeds]
        q1, med, q3 = quartiles(finals)
        curves = np.array([[hv_at(r["events"], c) for c in grid] for r in seeds])
        methods[name] = {
            "kind": "ours" if name in OURS or name in OUR_VARIANTS else "peer",
            "setting": SETTINGS.get(name, "autopeft strategy through the study loop"),
            "final_hv_median": med, "final_hv_q25": q1, "final_hv_q75": q3,
            "final_hv_per_seed": finals,
            "jobs_median": statistics.median(r["jobs"] for r in seeds),
            "full_trials_median": statistics.median(r["full_trials"] for r in seeds),
            "method_seconds_median": statistics.median(r["seconds"] for r in seeds),
            "curve_median": np.percentile(curves, 50, axis=0).tolist(),
            "curve_q25": np.percentile(curves, 25, axis=0).tolist(),
            "curve_q75": np.percentile(curves, 75, axis=0).tolist(),
        }
    peers = [n for n in methods if methods[n]["kind"] == "peer"]
    ours = [n for n in methods if methods[n]["kind"] == "ours"]
    best_peer = max(peers, key=lambda n: methods[n]["final_hv_median"]) if peers else None
    target = methods[best_peer]["final_hv_median"] if best_peer else None
    for name, row in methods.items():
        if target is None:
            row.update(compute_to_target_median=None, compute_to_target_per_seed=None, reached_seeds=None,
                       wall_seconds_to_target_median=None)
            continue
        reach = [first_reach(r["events"], target) for r in runs[name]]
        computes = [x[0] if x else math.inf for x in reach]
        walls = [x[0] * problem.full_trial_seconds + x[1] if x else math.inf for x in reach]
        row.update(compute_to_target_median=median_or_none(computes),
                   compute_to_target_per_seed=[None if math.isinf(c) else c for c in computes],
                   reached_seeds=sum(1 for x in reach if x),
                   wall_seconds_to_target_median=median_or_none(walls))
    ratio = best_ours = default_ratio = None
    if target is not None and ours:
        reaching = [n for n in ours if methods[n]["compute_to_target_median"] is not None]
        if reaching:
            best_ours = min(reaching, key=lambda n: methods[n]["compute_to_target_median"])
            ratio = methods[best_ours]["compute_to_target_median"] / budget
        if DEFAULT_OURS in methods and methods[DEFAULT_OURS]["compute_to_target_median"] is not None:
            default_ratio = methods[DEFAULT_OURS]["compute_to_target_median"] / budget
    return {**problem.describe(), "budget_full_trials": budget, "grid": grid, "target_hv": target,
            "best_peer": best_peer, "best_peer_compute": budget if best_peer else None,
            "best_ours": best_ours, "compute_ratio_vs_best_peer": ratio,
            "compute_ratio_default_vs_best_peer": default_ratio, "skipped": dict(skipped),
            "methods": methods, "runs": {n: [r["events"] for r in seeds] for n, seeds in runs.items()},
            "run_stats": {n: [{k: r[k] for k in ("jobs", "full_trials", "seconds")} for r in seeds]
                          for n, seeds in runs.items()}}


def previous_runs(report: Mapping[str, Any], problem: str, budget: float,
                  seeds: int) -> dict[str, list[dict[str, Any]]]:
    """The runs of a problem in an earlier report (``--merge``), if it had the same budget and seeds."""
    if report["budget_full_trials"] != budget or report["seeds"] != seeds:
        raise SystemExit(f"--merge: the earlier report ran budget {report['budget_full_trials']} with "
                         f"{report['seeds']} seeds, not {budget} with {seeds}")
    for section in report["problems"]:
        if section["name"] == problem:
            return {n: [{**stats, "events": events} for events, stats in zip(section["runs"][n],
                                                                             section["run_stats"][n], strict=True)]
                    for n in section["runs"]}
    return {}


def plot(section: dict[str, Any], path: Path) -> str | None:
    """Anytime hypervolume curves (median and interquartile band per method); None if matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    grid = section["grid"]
    colours = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    for i, (name, row) in enumerate(section["methods"].items()):
        style = "-" if row["kind"] == "ours" else (":" if name in VARIANTS else "--")
        width = 2.4 if name == DEFAULT_OURS else 1.4
        (line,) = ax.plot(grid, row["curve_median"], style, lw=width, label=name, color=colours[2 * i % 20
                                                                                              + (i >= 10)])
        ax.fill_between(grid, row["curve_q25"], row["curve_q75"], color=line.get_color(), alpha=0.1)
    if section["target_hv"] is not None:
        ax.axhline(section["target_hv"], color="grey", lw=0.8, ls=":",
                   label=f"best peer's final ({section['best_peer']})")
    ratio = section["compute_ratio_vs_best_peer"]
    ax.set_title(f"{section['name']}: hypervolume of the full-fidelity front against compute "
                 f"(ratio vs best peer {ratio:.2f})" if ratio is not None else
                 f"{section['name']}: hypervolume of the full-fidelity front against compute")
    ax.set_xlabel("compute (full-fidelity trial equivalents)")
    ax.set_ylabel("hypervolume (share of the reference box)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def print_table(section: dict[str, Any], seeds: int) -> None:
    def fmt(x: float | None, spec: str = ".1f") -> str:
        return "never" if x is None else format(x, spec)

    print(f"\n{section['name']}: budget {section['budget_full_trials']:g} full trials, {seeds} seed(s); "
          f"target = best peer's final hypervolume ({section['best_peer']}: {fmt(section['target_hv'], '.4g')})")
    print(f"{'method':24s} {'final hv median (IQR)':>30s} {'compute to target':>18s} {'reached':>8s} "
          f"{'wall s to target':>17s} {'jobs':>5s} {'full':>5s} {'own s':>7s}")
    for name, row in section["methods"].items():
        print(f"{name:24s} {row['final_hv_median']:10.4f} ({row['final_hv_q25']:.4f}-{row['final_hv_q75']:.4f}) "
              f"{fmt(row['compute_to_target_median']):>18s} {row['reached_seeds']!s:>8s} "
              f"{fmt(row['wall_seconds_to_target_median'], '.0f'):>17s} {row['jobs_median']:5.0f} "
              f"{row['full_trials_median']:5.0f} {row['method_seconds_median']:7.1f}")
    print(f"compute_ratio_vs_best_peer ({section['best_ours']}): {fmt(section['compute_ratio_vs_best_peer'], '.3f')}"
          f"   default ({DEFAULT_OURS}): {fmt(section['compute_ratio_default_vs_best_peer'], '.3f')}")
