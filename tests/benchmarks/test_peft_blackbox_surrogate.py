"""benchmarks/peft_blackbox/surrogate.py: the surrogate of the real training table, and its search problem.

On a small table the test writes itself (configurations of lora.yaml scored by a known function, with
seed replicates) the surrogate must recover the ranking, measure the replicates' noise, keep held-out
configurations out of training, and draw its noise as a fixed function of (config, fidelity, seed). The
real table builds `blackbox-lora-sst2` where it holds enough runs and the GLUE files are there.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.peft_blackbox import surrogate as sg
from benchmarks.peft_blackbox.collect import COLUMNS, DEFAULT_OUT, NUM_LAYERS, SPACES
from tests.conftest import SHARED_GLUE

RUNGS = (512, 1024, 2048, 4096)
NOISE = {512: 0.005, 1024: 0.01, 2048: 0.02, 4096: 0.015}  # per rung, of the seed replicates


def _dims() -> dict[str, Any]:
    from autopeft.space.space import load_space

    return load_space(SPACES["lora"]).dimensions(NUM_LAYERS)


def _params(config: dict[str, Any]) -> int:
    """A stand-in count (the surrogate reads counts from the table): rank x roles x 768 per adapted layer."""
    total = 770
    for i in range(NUM_LAYERS):
        if config.get(f"layer_{i}.method", "none") != "none":
            total += config[f"layer_{i}.rank"] * len(config[f"layer_{i}.roles"]) * 768
    return total


def _truth(config: dict[str, Any], fidelity: int) -> float:
    """The known score: best near lr 1e-3, better with more parameters, rising with fidelity."""
    lr = math.exp(-((math.log10(config["learning_rate"]) + 3.0) ** 2) / 0.4)
    size = math.log(_params(config) / 770) / math.log(2e5 / 770)
    return 0.5 + 0.35 * (0.6 * lr + 0.4 * min(size, 1.0)) * (0.4 + 0.6 * math.log2(fidelity / 256) / 4)


def _write_table(path: Path, n_configs: int, *, replicate_every: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """The collector's columns for ``n_configs`` random lora.yaml configurations (seeds 0-3 for every fifth),
    one failed run and one half-written run, which the surrogate must leave out."""
    from autopeft.space.space import load_space

    space, rng, noise = load_space(SPACES["lora"]), random.Random(seed), np.random.default_rng(seed)
    configs = [space.sample(NUM_LAYERS, rng) for _ in range(n_configs)]
    rows: list[dict[str, Any]] = []

    def run(config_id: str, config: dict[str, Any], run_seed: int, rungs: tuple[int, ...] = RUNGS,
            status: str = "complete") -> None:
        for rung, fidelity in enumerate(rungs):
            score = min(1.0, max(0.0, _truth(config, fidelity) + NOISE[fidelity] * noise.standard_normal()))
            rows.append({"space": "lora", "task": "sst2", "recipe": "blackbox-sst2", "config_id": config_id,
                         "seed": run_seed, "fidelity": fidelity, "rung": rung, "status": status,
                         "score": "" if status == "failed" else f"{score:.6f}", "metric": "accuracy",
                         "trainable_params": _params(config), "train_seconds": fidelity / 100,
                         "config": json.dumps(config, sort_keys=True, separators=(",", ":"))})

    for i, config in enumerate(configs):
        for run_seed in (0, 1, 2, 3) if i % replicate_every == 0 else (0,):
            run(f"sobol-{i:04d}", config, run_seed)
    run("failed-run", space.sample(NUM_LAYERS, rng), 0, rungs=(512,), status="failed")
    run("half-run", space.sample(NUM_LAYERS, rng), 0, rungs=(512, 1024))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return configs


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> sg.Table:
    path = tmp_path_factory.mktemp("blackbox") / "table.csv"
    _write_table(path, 60)
    return sg.load_table("lora", "sst2", path)


@pytest.fixture(scope="module")
def report(table: sg.Table) -> dict[str, Any]:
    return sg.validate(_dims(), table)


def test_complete_runs_only(table: sg.Table) -> None:
    assert len(table.configs) == 60 and "failed-run" not in table.configs and "half-run" not in table.configs
    assert table.rungs == RUNGS
    assert table.runs == 60 + 12 * 3 and table.rows == table.runs * len(RUNGS)


def test_surrogate_recovers_the_ranking(report: dict[str, Any]) -> None:
    top = report["per_rung"][-1]
    assert top["fidelity"] == 4096 and top["configs"] == 60
    assert top["spearman"] > 0.8, report["per_rung"]
    assert top["mae"] < top["baseline_mae"]  # better than the training folds' mean at the rung
    assert report["overall"]["spearman"] > 0.8
    assert report["verdict"].startswith("ranks held-out configurations at the top rung")


def test_noise_std_is_the_replicates(table: sg.Table) -> None:
    """Pooled over the replicated configurations, as the module says; and the draws have that spread."""
    surrogate = sg.Surrogate(_dims(), table)
    for fidelity in RUNGS:
        groups: dict[str, list[float]] = {}
        for c, f, y in zip(table.config_ids, table.fidelities, table.scores, strict=True):
            if f == fidelity:
                groups.setdefault(c, []).append(y)
        replicated = [np.array(v) for v in groups.values() if len(v) > 1]
        pooled = math.sqrt(sum(float(np.sum((v - v.mean()) ** 2)) for v in replicated)
                           / sum(len(v) - 1 for v in replicated))
        assert surrogate.noise[fidelity]["noise_std"] == pytest.approx(pooled)
        assert surrogate.noise[fidelity]["noise_configs"] == 12
        assert surrogate.noise_std(fidelity) == pytest.approx(pooled)
        assert pooled == pytest.approx(NOISE[fidelity], rel=0.35)  # 36 degrees of freedom
    config = table.configs["sobol-0001"]
    params = _params(config)
    draws = np.array([surrogate.score(config, 2048, seed, params) for seed in range(400)])
    assert draws.std() == pytest.approx(surrogate.noise_std(2048), rel=0.15)
    assert draws.mean() == pytest.approx(surrogate.predict(config, 2048, params), abs=0.005)


def test_held_out_configurations_never_train(table: sg.Table, report: dict[str, Any]) -> None:
    seen: list[int] = []
    for train, test in sg.folds(table):
        assert not {table.config_ids[i] for i in train} & {table.config_ids[i] for i in test}
        seen += test
    assert sorted(seen) == list(range(table.rows))  # every row held out exactly once
    held = report["held_out_configs"]
    assert sorted(c for fold in held for c in fold) == sorted(table.configs)


def test_noise_draw_is_a_function_of_config_fidelity_seed(table: sg.Table) -> None:
    config = table.configs["sobol-0002"]
    same = json.loads(json.dumps(dict(reversed(list(config.items())))))  # other key order, lists rebuilt
    assert sg.noise_draw(config, 1024, 3) == sg.noise_draw(same, 1024, 3)
    assert sg.noise_draw(config, 1024, 3) == sg.noise_draw({k: np.float64(v) if isinstance(v, float) else v
                                                           for k, v in config.items()}, 1024, 3)
    draws = {sg.noise_draw(config, 1024, seed) for seed in range(20)}
    assert len(draws) == 20
    assert sg.noise_draw(config, 1024, 0) != sg.noise_draw(config, 2048, 0)
    surrogate = sg.Surrogate(_dims(), table)
    params = _params(config)
    assert surrogate.score(config, 1024, 7, params) == surrogate.score(same, 1024, 7, params)
    assert surrogate.score(config, 1024, 7, params) != surrogate.score(config, 1024, 8, params)
    assert 0.0 <= surrogate.score(config, 4096, 0, params) <= 1.0


def test_too_little_data(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    _write_table(path, 5)
    with pytest.raises(ValueError, match=r"has 5 complete configurations of lora/sst2 .*at least 20"):
        sg.BlackboxProblem("lora", "sst2", csv_path=path)
    with pytest.raises(ValueError, match="has 0 complete configurations of mixed/mrpc"):
        sg.BlackboxProblem("mixed", "mrpc", csv_path=path)


@pytest.mark.slow
def test_real_table_builds_blackbox_lora_sst2() -> None:
    """The search_efficiency problem on today's table: exact counts equal the table's, chance is SST-2's."""
    if not (SHARED_GLUE / "sst2/dev.tsv").is_file():
        pytest.skip(f"GLUE SST-2 not found in {SHARED_GLUE} (set AUTOPEFT_DATA_DIR)")
    real = sg.load_table("lora", "sst2", DEFAULT_OUT)
    if len(real.configs) < sg.MIN_CONFIGS:
        pytest.skip(f"the blackbox table has {len(real.configs)} complete lora/sst2 configurations, "
                    f"fewer than {sg.MIN_CONFIGS}")
    from benchmarks import search_efficiency

    problem = search_efficiency.PROBLEMS["blackbox-lora-sst2"]()
    assert isinstance(problem, sg.BlackboxProblem) and problem.name == "blackbox-lora-sst2"
    for config_id, config in problem.table.configs.items():
        assert problem.params(config) == problem.table.params[problem.table.config_ids.index(config_id)], config_id
    assert problem.report_fidelities == RUNGS and (problem.min_fidelity, problem.max_fidelity) == (512, 4096)
    assert problem.score_floor == pytest.approx(0.509, abs=0.001)  # SST-2 dev: 444 of 872 positive
    assert problem.max_params == problem.counter.bounds()[1] and problem.full_trial_seconds > 0
    assert len(problem.dims) == len(_dims())
    config = problem.sample(random.Random(0))
    scores = [problem.score(config, f, 0) for f in RUNGS]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == [problem.score(config, f, 0) for f in RUNGS]
