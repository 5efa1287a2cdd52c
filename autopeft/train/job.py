"""The trial job: one configuration, trained to a fidelity, scored and measured.

`TrialJob.run(fidelity)` trains from where the job (or its saved state in `trial_dir`) left off, so a
scheduler can ask for fidelity 50, look at the result, and later ask the same trial for 200.
Intermediate results at `checkpoints` go to `on_checkpoint`, which may stop the trial (pruned).
A trial that cannot go on (non-finite loss, out of memory) returns status `failed` with the reason;
configuration errors raise `AutopeftError` before any training starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from autopeft.errors import ConfigError, describe_exception
from autopeft.space.config import TrialConfig
from autopeft.train.progress import TrainingProgress
from autopeft.train.recipe import TrialRecipe
from autopeft.train.result import TrialResult, TrialStatus
from autopeft.train.session import TrainingSession
from autopeft.train.state import load_state

#: Called with each intermediate result; return False to stop the trial there (pruned).
CheckpointCallback = Callable[[TrialResult], bool]

_LOSS_WINDOW = 20


class TrialJob:
    """Trains one configuration of one recipe; cheap to create, builds the model on first `run`."""

    def __init__(self, recipe: TrialRecipe, config: TrialConfig, *, trial_dir: Path | None = None,
                 config_source: str | None = None, on_save: Callable[[], None] | None = None) -> None:
        if trial_dir is not None and trial_dir.exists() and not trial_dir.is_dir():
            raise ConfigError(f"{trial_dir} exists and is not a folder", field="trial_dir")
        self.recipe = recipe
        self.config = config
        self.trial_dir = trial_dir
        self.config_source = config_source
        self.on_save = on_save  # after each state saved in `trial_dir` (a URI runs folder uploads it)
        self._session: TrainingSession | None = None

    @property
    def session(self) -> TrainingSession:
        if self._session is None:
            self._session = TrainingSession(self.recipe, self.config, config_source=self.config_source)
            saved = load_state(self.trial_dir)
            if saved is not None:
                self._session.restore(saved)
        return self._session

    def run(self, fidelity: int | None = None, *, checkpoints: Sequence[int] = (),
            on_checkpoint: CheckpointCallback | None = None, evaluate_dev: bool = False,
            progress: TrainingProgress | None = None) -> TrialResult:
        """Train to `fidelity` (default: the recipe's max), reporting at `checkpoints` on the way.

        ``progress`` is told of every step (a bar or log lines in the CLI; a study's workers pass none).
        """
        spec = self.recipe.fidelity
        target = spec.max if fidelity is None else fidelity
        if not 0 < target <= spec.max:
            raise ConfigError(f"{target} is outside 1-{spec.max} ({spec.unit})", field="fidelity")
        session = self.session
        batch_size = session.training.batch_size
        target_steps = spec.to_steps(target, batch_size)
        stops = sorted({spec.to_steps(c, batch_size) for c in checkpoints if 0 < c < target} | {target_steps})

        if progress is not None:
            progress.begin(target_steps, session.step, batch_size)
        try:
            return self._train(session, stops, target_steps, on_checkpoint, evaluate_dev, progress)
        finally:
            if progress is not None:
                progress.end()

    def _train(self, session: TrainingSession, stops: list[int], target_steps: int,
               on_checkpoint: CheckpointCallback | None, evaluate_dev: bool,
               progress: TrainingProgress | None) -> TrialResult:
        on_step = None if progress is None else (lambda step: progress.step(step, session.smoothed_loss))
        start_step, seconds = session.step, 0.0
        for stop in stops:
            if stop <= session.step:
                continue
            try:
                seconds += session.train_until(stop, on_step=on_step)
            except _TRIAL_FAILURES as err:
                return self._result(TrialStatus.FAILED, seconds, start_step, error=describe_exception(err))
            if session.failure is not None:
                return self._result(TrialStatus.FAILED, seconds, start_step, error=session.failure)
            final = stop == target_steps
            result = self._result(TrialStatus.COMPLETE, seconds, start_step, evaluate=True,
                                  evaluate_dev=evaluate_dev and final)
            self._save()
            if final:
                return result
            if on_checkpoint is not None and not on_checkpoint(result):
                return result.model_copy(update={"status": TrialStatus.PRUNED})
        # Already at (or past) the target: report without training.
        return self._result(TrialStatus.COMPLETE, seconds, start_step, evaluate=True, evaluate_dev=evaluate_dev)

    def _save(self) -> None:
        if self.trial_dir is not None:
            self.session.save(self.trial_dir)
            if self.on_save is not None:
                self.on_save()

    def _result(self, status: TrialStatus, seconds: float, start_step: int, *, error: str | None = None,
                evaluate: bool = False, evaluate_dev: bool = False) -> TrialResult:
        session = self.session
        metrics = session.evaluate("validation") if evaluate else {}
        dev = session.evaluate("dev") if evaluate_dev and session.has_dev else None
        if dev is not None:
            dev = {k: v for k, v in dev.items() if k != "primary"}
        trained = (session.step - start_step) * session.training.batch_size
        losses = session.losses[-_LOSS_WINDOW:]
        return TrialResult(
            status=status,
            error=error,
            fidelity=self.recipe.fidelity.from_steps(session.step, session.training.batch_size),
            fidelity_unit=self.recipe.fidelity.unit,
            steps=session.step,
            start_step=start_step,
            score=metrics.get("primary"),
            metrics={k: v for k, v in metrics.items() if k != "primary"},
            dev_metrics=dev,
            train_loss=sum(losses) / len(losses) if losses else None,
            trainable_params=session.info.trainable_params,
            trainable_share=session.info.trainable_share,
            train_seconds=seconds,
            examples_per_second=trained / seconds if seconds > 0 else 0.0,
            peak_memory_mb=session.peak_memory_mb(),
            threads=torch.get_num_threads(),
            device=str(session.device),
        )


_TRIAL_FAILURES = (RuntimeError, MemoryError, FloatingPointError)
