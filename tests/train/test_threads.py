"""Threads and device of a trial: the default (the cores this process may use, split between workers),
the order of precedence (command line, then recipe, then default), and what `torch.get_num_threads()`
is inside a real trial, in this process and in a study's worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft.engine.executors import InProcessExecutor, LocalPoolExecutor
from autopeft.engine.task import TrialTask
from autopeft.engine.worker import run_trial
from autopeft.errors import ConfigError
from autopeft.space.config import TrialConfig
from autopeft.train import resources
from autopeft.train.job import TrialJob
from autopeft.train.recipe import TrainingSpec, TrialRecipe
from autopeft.train.resources import (
    check_device,
    check_threads,
    default_threads,
    resolve_device,
    with_resources,
)
from autopeft.yamlio import validate
from tests.conftest import TINY_PLAN, tiny_recipe_dict


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process may use 8 cores (of however many the machine has)."""
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)


@pytest.mark.parametrize(("workers", "expected"), [(1, 8), (2, 4), (3, 2), (8, 1), (16, 1)])
def test_the_default_splits_the_allowed_cores_between_workers(eight_cores: None, workers: int, expected: int) -> None:
    assert default_threads(workers) == expected


def test_the_default_follows_the_affinity_not_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(resources.os, "cpu_count", lambda: 64)
    assert default_threads() == 1


@pytest.mark.parametrize("bad", [0, -2, True, 1.5])
def test_bad_thread_counts_name_the_option(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^--threads: must be a whole number >= 1"):
        check_threads(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:", "cuda:x", "CPU", ""])
def test_bad_devices_name_the_option_and_the_accepted_ones(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^--device: .* is not a device; accepted: auto, cpu, cuda, cuda:N$"):
        check_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_gpu_that_is_not_there_is_one_line(name: str) -> None:
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU here; accepted: auto, cpu"):
        check_device(name)


def test_auto_and_cpu_resolve() -> None:
    assert check_device("cpu") == "cpu" and check_device(None) is None
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_the_recipe_accepts_every_device_name(device: str) -> None:
    assert TrainingSpec(device=device).device == device


def test_a_recipe_with_an_unknown_device_is_one_line(tiny_model_dir: Path) -> None:
    data = tiny_recipe_dict(tiny_model_dir, device="tpu")
    with pytest.raises(ConfigError, match=r"^r.yaml: training.device: 'tpu' is not a device; accepted: auto, cpu, "
                                          r"cuda, cuda:N$"):
        validate(TrialRecipe, data, source="r.yaml")


def test_the_command_line_overrides_the_recipe_and_the_default_fills_in(tiny_model_dir: Path) -> None:
    plain = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir))
    plain._source_dir = tiny_model_dir
    pinned = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir, threads=3, device="cpu"))
    assert with_resources(plain, default=5).training.threads == 5
    assert with_resources(pinned, default=5).training.threads == 3  # the recipe over the default
    assert with_resources(pinned, threads=2, default=5).training.threads == 2  # the option over the recipe
    assert with_resources(pinned, device="cuda:1").training.device == "cuda:1"
    assert with_resources(pinned) is pinned
    assert with_resources(plain, threads=2).base_dir == tiny_model_dir  # relative paths still resolve there


def _task(recipe: dict[str, object], threads: int | None = None) -> TrialTask:
    config = TrialConfig.model_validate({"plan": TINY_PLAN}).model_dump(mode="json", exclude_none=True)
    return TrialTask(study="s", number=0, config={}, trial_config=config, recipe=recipe, recipe_dir=".",
                     fidelity=2, threads=threads)


def test_a_study_gives_each_trial_the_option_then_the_recipe_then_the_split(eight_cores: None,
                                                                            tiny_model_dir: Path) -> None:
    plain, pinned = tiny_recipe_dict(tiny_model_dir), tiny_recipe_dict(tiny_model_dir, threads=3)
    pool = LocalPoolExecutor(3)
    try:
        assert pool.place(_task(plain)).threads == 2  # 8 cores // 3 workers
        assert pool.place(_task(pinned)).threads == 3
    finally:
        pool.shutdown()
    chosen = LocalPoolExecutor(2, threads=1, device="cpu")
    try:
        placed = chosen.place(_task(pinned))
        assert (placed.threads, placed.device) == (1, "cpu")
    finally:
        chosen.shutdown()
    assert InProcessExecutor().place(_task(plain)).threads is None  # the process's own setting
    assert InProcessExecutor(threads=4).place(_task(plain)).threads == 4


def test_a_trial_runs_with_the_threads_it_was_given(tiny_model_dir: Path) -> None:
    torch.set_num_threads(2)
    recipe = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir, fmax=4, threads=1))
    result = TrialJob(recipe, TrialConfig.model_validate({"plan": TINY_PLAN})).run(2)
    assert result.threads == torch.get_num_threads() == 1 and result.device == "cpu"


def test_a_study_worker_trains_with_the_threads_of_its_task(tiny_model_dir: Path) -> None:
    """The worker's path (`run_trial`), in this process: the task's threads win over the recipe's."""
    outcome = run_trial(_task(tiny_recipe_dict(tiny_model_dir, fmax=4, threads=2), threads=1))
    assert outcome.ok, outcome.error
    assert outcome.metrics["threads"] == 1 and outcome.metrics["device"] == "cpu"
