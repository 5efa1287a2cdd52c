"""A surrogate of the PEFT blackbox: scores of real training, replayed for strategies (issue 16, part 1).

Fitted on `benchmarks/data/peft_blackbox.csv` (complete runs only; refitted from whatever the table holds,
since the collector keeps appending to it), one model per (space, task):

- features: the configuration as the BoTorch sampler encodes it (`SpaceEncoder` over the collector's
  space on MiniLM-L6, `space.dimensions(6)`; its index-coded categorical columns are categorical for the
  trees), plus log2(fidelity) and log(trainable parameters);
- model: scikit-learn's `HistGradientBoostingRegressor` on the dev score, seed replicates included (they
  are more samples of the same configuration);
- noise: the run-to-run standard deviation per rung, pooled over the configurations trained with seeds
  0-3; the surrogate's score of (config, fidelity, seed) is the prediction plus a normal draw with that
  std which is a fixed function of (config, fidelity, seed) (so a replay is reproducible, and two seeds
  of one configuration differ as two real runs do), clipped to [0, 1];
- validation: whole configurations held out (GroupKFold by config id, 5 folds); per rung and overall,
  the Spearman rank correlation and the MAE of the held-out predictions against the configurations'
  seed-0 scores, next to the noise std, the MAE of predicting the training folds' mean at the rung
  (a surrogate must beat it), and the Spearman the seed replicates reach (seed 0 against seed 1 of the
  same configurations; few pairs, so also the signal share 1 - noise var / spread var across
  configurations): the ceiling any surrogate can reach on one run's scores.

`BlackboxProblem` is the `search_efficiency.Problem` built on it (`blackbox-<space>-<task>` there): exact
counts from `ParamCounter` with the collector's recipe, chance as the score floor.

Usage::

    python benchmarks/peft_blackbox/surrogate.py                          # lora/sst2: table + JSON
    python benchmarks/peft_blackbox/surrogate.py --space mixed --task mrpc
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import numbers
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import cpu_model  # noqa: E402
from benchmarks.peft_blackbox.collect import DEFAULT_OUT, ETA, NUM_LAYERS, SPACES, TASKS  # noqa: E402
from benchmarks.search_problem import Problem  # noqa: E402

MIN_CONFIGS = 20  # fewer complete configurations than this cannot be validated in 5 folds worth reading
FOLDS = 5
RESULT = ROOT / "benchmarks/results/peft_blackbox_surrogate.json"
# Small data (tens of configurations): small trees, leaves of 10 rows, a slow learning rate; the best of 7
# settings compared by held-out Spearman on the 38 configurations of lora/sst2 (2026-12-07).
HGB_SETTINGS: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.05, "max_leaf_nodes": 15,
                                "min_samples_leaf": 10, "l2_regularization": 1.0, "random_state": 0}


# -- the table --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """The complete runs of one (space, task) list: one entry per (config id, seed, fidelity) row."""

    space: str
    task: str
    config_ids: list[str]
    seeds: list[int]
    fidelities: list[int]
    scores: list[float]
    params: list[int]
    train_seconds: list[float]
    configs: dict[str, dict[str, Any]]  # config id -> configuration
    rungs: tuple[int, ...]

    @property
    def rows(self) -> int:
        return len(self.scores)

    @property
    def runs(self) -> int:
        return len(set(zip(self.config_ids, self.seeds, strict=True)))


def load_table(space: str, task: str, path: Path = DEFAULT_OUT) -> Table:
    """The complete runs of (space, task) in the collector's CSV (read only; it may be growing).

    A run counts when every rung of the list's ladder (the fidelities its rows hold) is there and
    complete; a failed or half-written run is left out.
    """
    by_run: dict[tuple[str, int], list[dict[str, str]]] = {}
    if path.exists():
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("space") == space and row.get("task") == task and row.get("fidelity"):
                    by_run.setdefault((row["config_id"], int(row["seed"])), []).append(row)
    ladder = sorted({int(r["fidelity"]) for rows in by_run.values() for r in rows
                     if r["status"] == "complete"})
    table = Table(space, task, [], [], [], [], [], [], {}, tuple(ladder))
    for (config_id, seed), rows in sorted(by_run.items()):
        complete = {int(r["fidelity"]): r for r in rows if r["status"] == "complete" and r["score"]}
        if any(r["status"] != "complete" for r in rows) or sorted(complete) != ladder:
            continue
        for fidelity in ladder:
            r = complete[fidelity]
            table.config_ids.append(config_id)
            table.seeds.append(seed)
            table.fidelities.append(fidelity)
            table.scores.append(float(r["score"]))
            table.params.append(int(r["trainable_params"]))
            table.train_seconds.append(float(r["train_seconds"] or "nan"))
            table.configs.setdefault(config_id, json.loads(r["config"]))
    return table


def require_configs(table: Table, minimum: int = MIN_CONFIGS) -> None:
    """Refuse a table too small to fit and validate a surrogate on, saying how much it has."""
    if len(table.configs) < minimum:
        raise ValueError(f"the blackbox table has {len(table.configs)} complete configurations of "
                         f"{table.space}/{table.task} ({table.runs} runs, {table.rows} rows); a surrogate needs "
                         f"at least {minimum}: collect more with benchmarks/peft_blackbox/collect.py "
                         f"--space {table.space} --task {table.task}")


# -- noise ------------------------------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    """JSON-stable values (numpy scalars as Python numbers, tuples as lists), so a draw never depends on types."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def noise_draw(config: Mapping[str, Any], fidelity: int, seed: int) -> float:
    """A standard normal draw that is a fixed function of (configuration, fidelity, seed)."""
    key = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{key}|{int(fidelity)}|{int(seed)}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal())


def replicate_noise(table: Table) -> dict[int, dict[str, Any]]:
    """Per rung: the pooled run-to-run std over configurations with several seeds, and the seed-0 vs seed-1
    Spearman of those configurations (how well one real run ranks them)."""
    out: dict[int, dict[str, Any]] = {}
    for fidelity in table.rungs:
        by_config: dict[str, dict[int, float]] = {}
        for c, s, f, y in zip(table.config_ids, table.seeds, table.fidelities, table.scores, strict=True):
            if f == fidelity:
                by_config.setdefault(c, {})[s] = y
        replicated = {c: v for c, v in by_config.items() if len(v) >= 2}
        dof = sum(len(v) - 1 for v in replicated.values())
        ss = sum(float(np.sum((np.array(list(v.values())) - np.mean(list(v.values()))) ** 2))
                 for v in replicated.values())
        pairs = [(v[0], v[1]) for v in replicated.values() if 0 in v and 1 in v]
        out[fidelity] = {"noise_std": math.sqrt(ss / dof) if dof else None, "noise_configs": len(replicated),
                         "noise_runs": dof + len(replicated),
                         "seed_spearman": spearman([a for a, _ in pairs], [b for _, b in pairs]),
                         "seed_pairs": len(pairs)}
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties averaged); None where it is undefined (< 3 points, a constant side)."""
    if len(a) < 3 or np.ptp(np.asarray(a, dtype=float)) == 0 or np.ptp(np.asarray(b, dtype=float)) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def one_thread() -> Any:
    """OpenMP limited to one thread: on a few hundred rows the trees' threads only contend (10x slower on a
    busy 2-core machine)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


# -- the model --------------------------------------------------------------------------------------------
class Surrogate:
    """Gradient-boosted trees over (encoded configuration, log2 fidelity, log params) plus the measured noise."""

    def __init__(self, dims: Mapping[str, Any], table: Table, *, fit: bool = True) -> None:
        from autopeft.space.encoding import SpaceEncoder

        self.encoder = SpaceEncoder(dims)
        self.table = table
        self.noise = replicate_noise(table)
        known = {f: v["noise_std"] for f, v in self.noise.items() if v["noise_std"] is not None}
        self._noise_rungs = sorted(known)
        self._noise_stds = [known[f] for f in self._noise_rungs]
        self._cache: dict[tuple[str, int], float] = {}
        self.model: Any = self._fit(range(table.rows)) if fit else None

    def features(self, configs: Sequence[Mapping[str, Any]], fidelities: Sequence[int],
                 params: Sequence[int]) -> np.ndarray:
        encoded = self.encoder.encode_many(configs) if configs else np.empty((0, self.encoder.dim))
        extra = np.column_stack([np.log2(np.asarray(fidelities, dtype=float)),
                                 np.log(np.asarray(params, dtype=float))])
        return np.hstack([np.asarray(encoded, dtype=float).reshape(len(configs), -1), extra])

    def _rows_features(self, rows: Sequence[int]) -> np.ndarray:
        t = self.table
        return self.features([t.configs[t.config_ids[i]] for i in rows], [t.fidelities[i] for i in rows],
                             [t.params[i] for i in rows])

    def _fit(self, rows: Sequence[int] | range) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor

        rows = list(rows)
        mask = np.zeros(self.encoder.dim + 2, dtype=bool)
        mask[self.encoder.cat_dims] = True
        model = HistGradientBoostingRegressor(categorical_features=mask, **HGB_SETTINGS)
        with one_thread():
            model.fit(self._rows_features(rows), np.array([self.table.scores[i] for i in rows]))
        return model

    def noise_std(self, fidelity: int) -> float:
        """The measured run-to-run std at ``fidelity`` (interpolated in log2 fidelity between rungs)."""
        if not self._noise_rungs:
            return 0.0
        return float(np.interp(math.log2(fidelity), np.log2(self._noise_rungs), self._noise_stds))

    def predict(self, config: Mapping[str, Any], fidelity: int, params: int) -> float:
        """The model's expected score (no noise), clipped to [0, 1]; cached per (configuration, fidelity)."""
        key = (json.dumps(_canonical(config), sort_keys=True), int(fidelity))
        if key not in self._cache:
            x = self.features([config], [fidelity], [params])
            with one_thread():
                self._cache[key] = float(np.clip(self.model.predict(x)[0], 0.0, 1.0))
        return self._cache[key]

    def score(self, config: Mapping[str, Any], fidelity: int, seed: int, params: int) -> float:
        """Prediction + the measured noise, drawn as a fixed function of (config, fidelity, seed); in [0, 1]."""
        value = self.predict(config, fidelity, params) + self.noise_std(fidelity) * noise_draw(config, fidelity, seed)
        return float(min(1.0, max(0.0, value)))


def folds(table: Table, k: int = FOLDS) -> Iterator[tuple[list[int], list[int]]]:
    """(train rows, held-out rows) of GroupKFold by config id: a configuration's every run is on one side."""
    from sklearn.model_selection import GroupKFold

    groups = np.array(table.config_ids)
    for train, test in GroupKFold(n_splits=k).split(np.zeros(table.rows), groups=groups):
        yield train.tolist(), test.tolist()


def validate(dims: Mapping[str, Any], table: Table, k: int = FOLDS) -> dict[str, Any]:
    """Held-out quality per rung and overall, next to the noise and what seed replicates reach."""
    require_configs(table)
    surrogate = Surrogate(dims, table, fit=False)
    predicted: dict[int, float] = {}
    baseline: dict[int, float] = {}
    held_out: list[list[str]] = []
    for train, test in folds(table, k):
        model = surrogate._fit(train)
        with one_thread():
            preds = np.clip(model.predict(surrogate._rows_features(test)), 0.0, 1.0)
        means = {f: float(np.mean([table.scores[i] for i in train if table.fidelities[i] == f])) for f in table.rungs}
        for i, p in zip(test, preds, strict=True):
            predicted[i] = float(p)
            baseline[i] = means[table.fidelities[i]]
        held_out.append(sorted({table.config_ids[i] for i in test}))
    # One point per configuration and rung: its seed-0 run (every configuration has one).
    scored = [i for i in range(table.rows) if table.seeds[i] == 0]
    per_rung = []
    for fidelity in table.rungs:
        rows = [i for i in scored if table.fidelities[i] == fidelity]
        y = [table.scores[i] for i in rows]
        p = [predicted[i] for i in rows]
        per_rung.append({"fidelity": fidelity, "configs": len(rows), "spearman": spearman(p, y),
                         "mae": float(np.mean(np.abs(np.subtract(p, y)))),
                         "baseline_mae": float(np.mean(np.abs(np.subtract([baseline[i] for i in rows], y)))),
                         "score_std": float(np.std(y)), **surrogate.noise[fidelity]})
        noise = per_rung[-1]["noise_std"]  # the share of the spread across configurations that is not noise
        per_rung[-1]["signal_share"] = None if noise is None or not np.std(y) else 1 - noise**2 / float(np.var(y))
    y_all = [table.scores[i] for i in scored]
    p_all = [predicted[i] for i in scored]
    rho = [r["spearman"] for r in per_rung if r["spearman"] is not None]
    overall = {"spearman": spearman(p_all, y_all), "mean_spearman_per_rung": float(np.mean(rho)) if rho else None,
               "mae": float(np.mean(np.abs(np.subtract(p_all, y_all)))),
               "baseline_mae": float(np.mean(np.abs(np.subtract([baseline[i] for i in scored], y_all))))}
    top = per_rung[-1]
    return {"space": table.space, "task": table.task, "rows": table.rows, "runs": table.runs,
            "configs": len(table.configs), "rungs": list(table.rungs), "folds": k,
            "model": "HistGradientBoostingRegressor",
            "settings": HGB_SETTINGS, "features": f"SpaceEncoder over space.dimensions({NUM_LAYERS}) "
            f"({surrogate.encoder.dim} columns, {len(surrogate.encoder.cat_dims)} categorical), log2(fidelity), "
            "log(trainable_params)", "per_rung": per_rung, "overall": overall,
            "verdict": verdict(top), "held_out_configs": held_out}


def verdict(top: Mapping[str, Any]) -> str:
    """A plain sentence on whether the surrogate ranks configurations at the top rung."""
    rho, seed_rho = top["spearman"], top["seed_spearman"]
    ceiling = f" (one real run against another: {seed_rho:.2f} over {top['seed_pairs']} configurations)" \
        if seed_rho is not None else ""
    if rho is None:
        return "cannot rank: the held-out scores at the top rung are constant"
    if rho >= 0.7 and top["mae"] < top["baseline_mae"]:
        return f"ranks held-out configurations at the top rung: Spearman {rho:.2f}{ceiling}"
    if rho >= 0.4:
        return (f"ranks held-out configurations only roughly at the top rung: Spearman {rho:.2f}{ceiling}; "
                "more runs are needed before it is a benchmark")
    return (f"cannot rank held-out configurations at the top rung with this table: Spearman {rho:.2f}{ceiling}; "
            "not a benchmark yet")


# -- the search_efficiency problem ------------------------------------------------------------------------
def data_dir() -> Path:
    """The GLUE folder, as the collector finds it: $AUTOPEFT_DATA_DIR, else ../shared/data/glue."""
    return Path(os.environ.get("AUTOPEFT_DATA_DIR") or ROOT.parent / "shared/data/glue")


def chance_score(recipe: Any) -> float:
    """The task's metric for always predicting the dev split's majority class (SST-2 accuracy ~0.509, MRPC
    F1 ~0.812): the score floor below which a configuration has learnt nothing."""
    from autopeft.train.metrics import compute_metric
    from autopeft.train.tasks.loader import load_task

    data = load_task(recipe.task, recipe.base_dir)
    labels = np.array([int(e.label) for e in data.dev])
    majority = int(np.bincount(labels).argmax())
    return float(compute_metric(data.metric, np.full_like(labels, majority), labels)[data.metric])


class BlackboxProblem(Problem):
    """Scores from the surrogate of real training; exact counts; fidelity 512-4,096 examples, eta 2."""

    def __init__(self, space: str, task: str, *, csv_path: Path = DEFAULT_OUT, glue: Path | None = None) -> None:
        from autopeft.engine.definition import make_objectives
        from autopeft.search.rungs import rung_levels
        from autopeft.space.space import load_space
        from autopeft.train.counting import ParamCounter
        from benchmarks.peft_blackbox.collect import load_blackbox_recipe

        self.name = f"blackbox-{space}-{task}"
        table = load_table(space, task, csv_path)
        require_configs(table)
        glue = glue or data_dir()
        recipe = load_blackbox_recipe(task, data_dir=glue.resolve(), threads=1, device="cpu", quick=False)
        if not (glue / recipe.task.name).is_dir():  # `mrpc-long` trains GLUE's mrpc
            raise FileNotFoundError(f"{self.name}: no GLUE {recipe.task.name} in {glue} (set AUTOPEFT_DATA_DIR)")
        self.space = load_space(SPACES[space])
        self.counter = ParamCounter.for_recipe(recipe, self.space)
        self.counter.warm()
        self.dims = self.space.dimensions(self.counter.num_layers)
        if self.counter.num_layers != NUM_LAYERS:
            raise RuntimeError(f"{self.name}: the recipe's model has {self.counter.num_layers} layers, "
                               f"not {NUM_LAYERS}")
        for config_id, config in table.configs.items():  # the table's counts are the counter's
            have = table.params[table.config_ids.index(config_id)]
            if self.counter.count(config) != have:
                raise RuntimeError(f"{self.name}: {config_id} has {have} trainable parameters in the table, "
                                   f"ParamCounter says {self.counter.count(config)}")
        self.min_fidelity, self.max_fidelity, self.eta = recipe.fidelity.min, recipe.fidelity.max, ETA
        self.report_fidelities = tuple(rung_levels(self.min_fidelity, self.max_fidelity, self.eta))
        if tuple(table.rungs) != self.report_fidelities:
            raise RuntimeError(f"{self.name}: the table's rungs {table.rungs} are not the recipe's "
                               f"{self.report_fidelities}")
        self.surrogate = Surrogate(self.dims, table)
        if not self.surrogate._noise_rungs:
            raise ValueError(f"{self.name}: no configuration of the table has seed replicates, so the noise "
                             "is unmeasured; collect more runs")
        self.table = table
        self.score_floor = chance_score(recipe)
        # Measured from chance, as a study's objectives are (`TaskData.chance`); the dev split's here.
        self.objectives = make_objectives(("score", "trainable_params"), base_params=self.counter.base_params,
                                          chance=self.score_floor)
        self.defaults = tuple(config for _, config in self.space.default_configs(self.counter.num_layers))
        self.max_params = float(self.counter.bounds()[1])
        top = [s for s, f in zip(table.train_seconds, table.fidelities, strict=True) if f == self.max_fidelity]
        self.full_trial_seconds = float(np.nanmedian(top))

    def score(self, config: Mapping[str, Any], fidelity: int, seed: int) -> float:
        return self.surrogate.score(config, fidelity, seed, self.params(config))

    def params(self, config: Mapping[str, Any]) -> int:
        return int(self.counter.count(dict(config)))

    def feasible(self, config: Mapping[str, Any]) -> bool:
        return bool(self.counter.feasible(dict(config)))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "table": {"rows": self.table.rows, "runs": self.table.runs,
                                                "configs": len(self.table.configs)},
                "noise_std": {str(f): v["noise_std"] for f, v in self.surrogate.noise.items()}}


# -- main -------------------------------------------------------------------------------------------------
def print_report(report: Mapping[str, Any]) -> None:
    def f(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    print(f"{report['space']}/{report['task']}: {report['rows']} rows, {report['runs']} complete runs, "
          f"{report['configs']} configurations; held out by configuration ({report['folds']} folds)")
    print(f"{'fidelity':>8s} {'configs':>7s} {'spearman':>8s} {'mae':>6s} {'base mae':>8s} {'score sd':>8s} "
          f"{'noise sd':>8s} {'signal':>6s} {'noise cfg':>9s} {'seed0~1 rho':>11s} {'pairs':>5s}")
    for r in report["per_rung"]:
        print(f"{r['fidelity']:8d} {r['configs']:7d} {f(r['spearman']):>8s} {r['mae']:6.3f} {r['baseline_mae']:8.3f} "
              f"{r['score_std']:8.3f} {f(r['noise_std']):>8s} {f(r['signal_share'], '.2f'):>6s} "
              f"{r['noise_configs']:9d} {f(r['seed_spearman']):>11s} {r['seed_pairs']:5d}")
    o = report["overall"]
    print(f"{'all':>8s} {'':7s} {f(o['spearman']):>8s} {o['mae']:6.3f} {o['baseline_mae']:8.3f}   "
          f"(mean per-rung spearman {f(o['mean_spearman_per_rung'])})")
    print(f"verdict: {report['verdict']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", choices=sorted(SPACES), default="lora")
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--table", type=Path, default=DEFAULT_OUT, help="the blackbox CSV (read only)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    from autopeft.space.space import load_space

    table = load_table(args.space, args.task, args.table)
    report: dict[str, Any]
    try:
        report = validate(load_space(SPACES[args.space]).dimensions(NUM_LAYERS), table)
        print_report(report)
    except ValueError as err:  # too few configurations: recorded as such, so the JSON shows the table's state
        print(err, file=sys.stderr)
        report = {"space": args.space, "task": args.task, "rows": table.rows, "runs": table.runs,
                  "configs": len(table.configs), "error": str(err)}
    entry = {"date": dt.date.today().isoformat(), "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
             "table": str(args.table.relative_to(ROOT) if args.table.is_relative_to(ROOT) else args.table),
             **report}
    # One entry per (space, task), so validating one list keeps the others' figures.
    payload: dict[str, Any] = {"benchmark": "peft_blackbox_surrogate", "lists": {}}
    if args.out.exists():
        payload = json.loads(args.out.read_text())
    payload["lists"][f"{args.space}/{args.task}"] = entry
    payload["lists"] = dict(sorted(payload["lists"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 1 if "error" in report else 0


if __name__ == "__main__":
    raise SystemExit(main())
