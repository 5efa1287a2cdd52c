"""benchmarks/peft_blackbox/collect.py --quick: real training of two lora.yaml configurations on SST-2.

Two collectors at once (``--shard 0/2`` and ``1/2``) on one table, each training one configuration;
one row per rung per configuration, dev scores in [0, 1], the exact trainable count `ParamCounter`
reports, and a third call that finds every row present and trains nothing. About 30 s on 2 cores.
Skips where the shared GLUE files are absent.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_GLUE

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks/peft_blackbox/collect.py"


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--data-dir", str(SHARED_GLUE),
            "--threads", "1", *extra]


def _collect(out: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_command(out), capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _collect_in_two_shards(out: Path) -> None:
    shards = [subprocess.Popen(_command(out, "--shard", f"{k}/2"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True) for k in range(2)]
    for shard in shards:
        output, _ = shard.communicate(timeout=600)
        assert shard.returncode == 0, output[-2000:]
        assert "1 runs to train" in output  # the two configurations split, neither trained twice


def _rows(out: Path) -> list[dict[str, str]]:
    with out.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_peft_blackbox_quick(tmp_path: Path) -> None:
    if not (SHARED_GLUE / "sst2/train.tsv").is_file():
        pytest.skip(f"GLUE SST-2 not found in {SHARED_GLUE} (set AUTOPEFT_DATA_DIR)")
    from autopeft.space.space import load_space
    from autopeft.train.counting import ParamCounter
    from autopeft.train.recipe import load_recipe

    out = tmp_path / "blackbox.csv"
    _collect_in_two_shards(out)
    rows = _rows(out)
    assert len(rows) == 4  # two configurations x rungs 64 and 128, one header: the appends did not interleave
    runs = {(r["space"], r["task"], r["config_id"], r["seed"]) for r in rows}
    assert runs == {("lora", "sst2", "default-lora-r8-qv", "0"), ("lora", "sst2", "sobol-0000", "0")}
    for run in runs:
        mine = [r for r in rows if (r["space"], r["task"], r["config_id"], r["seed"]) == run]
        assert sorted(int(r["fidelity"]) for r in mine) == [64, 128]
        assert sorted(int(r["rung"]) for r in mine) == [0, 1]
        seconds = [float(r["train_seconds"]) for r in sorted(mine, key=lambda r: int(r["fidelity"]))]
        assert 0 < seconds[0] <= seconds[1]  # so far, not per rung

    counter = ParamCounter.for_recipe(load_recipe(ROOT / "benchmarks/peft_blackbox/sst2.yaml"),
                                      load_space(ROOT / "search_spaces/lora.yaml"), num_labels=2)
    for row in rows:
        assert row["status"] == "complete", row["error"]
        assert row["recipe"] == "blackbox-sst2-quick" and row["metric"] == "accuracy"
        assert 0.0 <= float(row["score"]) <= 1.0 and 0.0 <= float(row["val_score"]) <= 1.0
        assert json.loads(row["dev_metrics"])["accuracy"] == pytest.approx(float(row["score"]), abs=1e-6)
        assert int(row["trainable_params"]) == counter.count(json.loads(row["config"]))
        assert float(row["examples_per_second"]) > 0 and row["torch"] and row["transformers"] and row["machine"]

    proc = _collect(out)  # resumes: every row is there, nothing trains
    assert "0 runs to train" in proc.stdout
    assert _rows(out) == rows


def test_peft_blackbox_quick_needs_out() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2 and "--quick needs --out" in proc.stderr


def test_peft_blackbox_shard_must_be_k_of_n() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shard", "2/2"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2 and "argument --shard: K must be in 0..N-1, got '2/2'" in proc.stderr


def test_noise_repeats_follow_each_block_of_ten() -> None:
    from benchmarks.peft_blackbox.collect import runs_of

    configs = [(f"c{i:02d}", {"i": i}) for i in range(12)]
    order = [(run.config_id, run.seed) for run in runs_of("lora", "sst2", configs)]
    assert order == ([(f"c{i:02d}", 0) for i in range(10)] + [("c00", s) for s in (1, 2, 3)]
                     + [("c10", 0), ("c11", 0)] + [("c10", s) for s in (1, 2, 3)])
    assert [run.seed for run in runs_of("lora", "sst2", configs, noise=False)] == [0] * 12
