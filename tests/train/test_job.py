"""`TrialJob` on a tiny saved BERT (real loading, tokenizer and demo task; 12 steps of batch 8):
its result, checkpoints and pruning, continuation from a trial directory, fidelity units and range,
failures as results, and the fast paths (frozen-prefix cache, fused LoRA) against the plain ones."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from autopeft.errors import AutopeftError, ConfigError
from autopeft.peft import PeftPlan, apply_plan
from autopeft.space.config import TrialConfig
from autopeft.train.job import TrialJob
from autopeft.train.recipe import TrialRecipe
from autopeft.train.result import TrialResult, TrialStatus
from autopeft.train.session import divergence, smooth_loss
from autopeft.train.state import STATE_FILE, trainable_state
from tests.conftest import TINY_PLAN, tiny_recipe_dict


def _recipe(model_dir: Path, **kwargs: Any) -> TrialRecipe:
    return TrialRecipe.model_validate(tiny_recipe_dict(model_dir, **kwargs))


def _config(plan: dict[str | int, Any] | None = None, **kwargs: Any) -> TrialConfig:
    return TrialConfig.model_validate({"plan": TINY_PLAN if plan is None else plan, **kwargs})


def _weights(job: TrialJob) -> dict[str, torch.Tensor]:
    return trainable_state(job.session.model)


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(value, b[name], atol=atol, rtol=0, msg=name)


# --- the result -------------------------------------------------------------------------------------


def test_complete_result_has_every_objective(tiny_model_dir: Path) -> None:
    recipe, config = _recipe(tiny_model_dir), _config()
    result = TrialJob(recipe, config).run()
    assert result.status is TrialStatus.COMPLETE
    assert result.error is None
    assert (result.fidelity, result.fidelity_unit, result.steps) == (12, "steps", 12)
    assert result.score is not None and 0.0 <= result.score <= 1.0
    assert result.metrics == {"accuracy": result.score}
    assert result.dev_metrics is None
    assert result.train_loss is not None and result.train_loss > 0

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    info = apply_plan(model, PeftPlan.from_selectors(TINY_PLAN, num_layers=3))
    assert result.trainable_params == info.trainable_params == 2 * 2 * (4 * 32 + 32 * 4) + (32 * 2 + 2)
    assert result.trainable_share == pytest.approx(info.trainable_share)
    assert 0 < result.trainable_share < 0.01
    assert result.train_seconds > 0
    assert result.examples_per_second == pytest.approx(12 * 8 / result.train_seconds)
    assert result.peak_memory_mb > 0
    TrialResult.model_validate_json(result.model_dump_json())  # round-trips as JSON


def test_checkpoints_report_increasing_fidelity(tiny_model_dir: Path) -> None:
    seen: list[TrialResult] = []

    def keep(result: TrialResult) -> bool:
        seen.append(result)
        return True

    job = TrialJob(_recipe(tiny_model_dir), _config())
    result = job.run(12, checkpoints=[8, 4, 12, 20], on_checkpoint=keep)
    assert [r.fidelity for r in seen] == [4, 8], "only checkpoints below the target, in order"
    assert all(r.score is not None and 0 <= r.score <= 1 for r in seen)
    assert result.status is TrialStatus.COMPLETE and result.fidelity == 12
    frozen = job.session.frozen
    assert frozen is not None and frozen.k == 1
    assert frozen.cache.hits >= 2, "validation rows come from the cache after the first checkpoint"


def test_checkpoint_returning_false_prunes_there(tiny_model_dir: Path) -> None:
    seen: list[int] = []

    def decide(result: TrialResult) -> bool:
        seen.append(result.fidelity)
        return result.fidelity < 8

    job = TrialJob(_recipe(tiny_model_dir), _config())
    result = job.run(checkpoints=[4, 8], on_checkpoint=decide)
    assert seen == [4, 8]
    assert result.status is TrialStatus.PRUNED
    assert (result.fidelity, result.steps) == (8, 8)
    assert result.score is not None

    promoted = job.run(12)  # a scheduler may later promote the same trial
    assert promoted.status is TrialStatus.COMPLETE
    assert promoted.steps == 12
    assert len(job.session.losses) == 12


def test_evaluate_dev_fills_dev_metrics(tiny_model_dir: Path) -> None:
    result = TrialJob(_recipe(tiny_model_dir), _config()).run(4, evaluate_dev=True)
    assert result.dev_metrics is not None
    assert 0.0 <= result.dev_metrics["accuracy"] <= 1.0


# --- continuation -------------------------------------------------------------------------------------


def test_continued_trial_equals_straight_trial(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Dropout 0.1 in the model: equal only if the data order, RNG, optimiser and schedule are restored."""
    recipe, config = _recipe(tiny_model_dir), _config()
    straight = TrialJob(recipe, config)
    full = straight.run(12)

    first = TrialJob(recipe, config, trial_dir=tmp_path)
    half = first.run(6)
    assert half.steps == 6
    assert (tmp_path / STATE_FILE).is_file()
    second = TrialJob(recipe, config, trial_dir=tmp_path)
    assert second.session.step == 6
    resumed = second.run(12)

    assert resumed.status is TrialStatus.COMPLETE and resumed.steps == 12
    _assert_same_weights(_weights(second), _weights(straight))
    assert second.session.losses == pytest.approx(straight.session.losses, abs=1e-6)
    assert resumed.score == full.score
    assert resumed.train_seconds > 0
    assert resumed.examples_per_second == pytest.approx(6 * 8 / resumed.train_seconds), "only the steps run now"


def test_run_at_a_reached_fidelity_does_not_train(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe, config = _recipe(tiny_model_dir), _config()
    TrialJob(recipe, config, trial_dir=tmp_path).run(6)
    job = TrialJob(recipe, config, trial_dir=tmp_path)
    before = _weights(job)
    result = job.run(4)
    assert result.status is TrialStatus.COMPLETE
    assert result.steps == 6
    assert result.train_seconds == 0.0
    _assert_same_weights(_weights(job), before, atol=0.0)


def test_trial_dir_of_another_config_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = _recipe(tiny_model_dir)
    TrialJob(recipe, _config(), trial_dir=tmp_path).run(4)
    other = TrialJob(recipe, _config(learning_rate=1e-3), trial_dir=tmp_path)
    with pytest.raises((AutopeftError, RuntimeError), match="another configuration"):
        other.run(8)


def test_a_state_saved_with_other_threads_is_the_same_trial(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A study's worker trains with 1 thread; `export` reads its state in a process with all cores."""
    recipe, config = _recipe(tiny_model_dir), _config()
    one_thread = recipe.model_copy(update={"training": recipe.training.model_copy(update={"threads": 1})})
    TrialJob(one_thread, config, trial_dir=tmp_path).run(4)
    default_threads = recipe.model_copy(update={"training": recipe.training.model_copy(update={"threads": None})})
    assert TrialJob(default_threads, config, trial_dir=tmp_path).session.step == 4


def test_trial_dir_of_another_recipe_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = _config()
    TrialJob(_recipe(tiny_model_dir), config, trial_dir=tmp_path).run(4)
    other = TrialJob(_recipe(tiny_model_dir, batch_size=4), config, trial_dir=tmp_path)
    with pytest.raises((AutopeftError, RuntimeError)):
        other.run(8)


# --- fidelity ----------------------------------------------------------------------------------------


def test_examples_fidelity_converts_to_steps(tiny_model_dir: Path) -> None:
    recipe = _recipe(tiny_model_dir, unit="examples", fmin=8, fmax=96)
    seen: list[int] = []

    def keep(result: TrialResult) -> bool:
        seen.append(result.steps)
        return True

    result = TrialJob(recipe, _config()).run(44, checkpoints=[16], on_checkpoint=keep)
    assert seen == [2]
    assert result.steps == 6  # ceil(44 / 8)
    assert (result.fidelity, result.fidelity_unit) == (48, "examples")  # what was really seen
    assert result.status is TrialStatus.COMPLETE


@pytest.mark.parametrize("fidelity", [0, -1, 13])
def test_fidelity_outside_range_is_a_config_error(tiny_model_dir: Path, fidelity: int) -> None:
    job = TrialJob(_recipe(tiny_model_dir), _config())
    with pytest.raises(ConfigError, match=r"fidelity: .* is outside 1-12 \(steps\)") as info:
        job.run(fidelity)
    assert info.value.field == "fidelity"
    assert job._session is None, "refused before the model is built"


# --- failures are results ------------------------------------------------------------------------------


def test_non_finite_loss_is_a_failed_result(tiny_model_dir: Path, tmp_path: Path) -> None:
    job = TrialJob(_recipe(tiny_model_dir), _config(learning_rate=1e30), trial_dir=tmp_path)
    result = job.run(checkpoints=[6], on_checkpoint=lambda r: pytest.fail("no checkpoint after a failure"))
    assert result.status is TrialStatus.FAILED
    assert result.error is not None and "non-finite training loss" in result.error
    assert result.steps < 6
    assert result.score is None
    assert not (tmp_path / STATE_FILE).exists(), "a failed trial saves no state to continue from"


def test_runaway_loss_is_a_failed_result_as_diverged(tiny_model_dir: Path, tmp_path: Path) -> None:
    """At learning rate 1e6 the loss stays finite but jumps from 0.69 to ~6e5: that trial has diverged."""
    job = TrialJob(_recipe(tiny_model_dir), _config(learning_rate=1e6), trial_dir=tmp_path)
    result = job.run(checkpoints=[6], on_checkpoint=lambda r: pytest.fail("no checkpoint after a failure"))
    assert result.status is TrialStatus.FAILED
    assert result.error is not None and "\n" not in result.error
    assert re.fullmatch(r"diverged: smoothed training loss \S+ at step 2 is above 10x its starting value 0\.69\d*",
                        result.error), result.error
    assert float(result.error.split()[4]) > 1e3
    assert result.steps == 1 and result.score is None
    assert not (tmp_path / STATE_FILE).exists(), "a failed trial saves no state to continue from"


def test_a_normal_run_and_a_switched_off_check_are_not_flagged(tiny_model_dir: Path) -> None:
    normal = TrialJob(_recipe(tiny_model_dir, fmax=24), _config())
    result = normal.run()
    assert result.status is TrialStatus.COMPLETE and result.error is None
    assert normal.session.smoothed_loss is not None and normal.session.smoothed_loss < 2 * normal.session.losses[0]
    unchecked = TrialJob(_recipe(tiny_model_dir, divergence_factor=None), _config(learning_rate=1e6)).run()
    assert unchecked.status is TrialStatus.COMPLETE and unchecked.score is not None, "the rule is the setting's"


def test_the_divergence_rule_smooths_noise_and_floors_its_reference() -> None:
    def first_alarm(losses: list[float], factor: float | None = 10.0) -> str | None:
        smoothed = None
        for step, value in enumerate(losses, start=1):
            smoothed = smooth_loss(smoothed, value)
            reason = divergence(losses[0], smoothed, factor, step) if step > 1 else None
            if reason is not None:
                return reason
        return None

    assert first_alarm([0.69] * 5 + [20.0] + [0.69] * 5) is None, "one bad batch is noise"
    assert first_alarm([0.69, 0.7, 300104.0]) == (
        "diverged: smoothed training loss 3e+04 at step 3 is above 10x its starting value 0.69")
    assert first_alarm([0.69] + [8.0] * 30) is not None, "a loss that stays high trips it too"
    assert first_alarm([0.69] + [8.0] * 30, factor=None) is None
    assert first_alarm([0.001, 0.05, 0.2, 0.1]) is None, "near-zero starts are floored"
    assert first_alarm([0.001] + [2.0] * 40) == ("diverged: smoothed training loss 1.04 at step 8 is above 10x 0.1 "
                                                 "(its starting value 0.001 is below that floor)")


def test_runtime_error_in_training_is_a_failed_result(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = TrialJob(_recipe(tiny_model_dir), _config())
    session = job.session

    def boom(*_: Any, **__: Any) -> float:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(session, "train_until", boom)
    result = job.run()
    assert result.status is TrialStatus.FAILED
    assert result.error == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


# --- fast paths equal the plain ones -------------------------------------------------------------------


def test_frozen_cache_and_fused_paths_match_plain(tiny_model_dir_no_dropout: Path) -> None:
    config = _config()
    runs: dict[str, TrialJob] = {}
    for name, training in {"default": {}, "no_cache": {"frozen_cache": False}, "unfused": {"fused": False},
                           "plain": {"frozen_cache": False, "fused": False}}.items():
        runs[name] = TrialJob(_recipe(tiny_model_dir_no_dropout, **training), config)
        assert runs[name].run(checkpoints=[6]).status is TrialStatus.COMPLETE
    assert runs["default"].session.frozen is not None
    assert runs["default"].session.frozen.cache.misses > 0
    assert runs["no_cache"].session.frozen is None
    reference = _weights(runs["plain"])
    for name in ("default", "no_cache", "unfused"):
        _assert_same_weights(_weights(runs[name]), reference, atol=1e-5)
        assert runs[name].session.losses == pytest.approx(runs["plain"].session.losses, abs=1e-5)
