"""`TrainingSession`: the model, data, optimiser and schedule of one trial, and its step loop.

Kept apart from `TrialJob` (which decides when to stop and what to report) so that the benchmark and
`autopeft train` drive exactly the same training code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from autopeft.errors import ConfigError
from autopeft.peft import AdaptedModelInfo, PeftPlan, apply_plan
from autopeft.peft.attention import enable_fast_dropout
from autopeft.peft.inject import model_layers
from autopeft.peft.kernels.dropout import use_fast_dropout
from autopeft.peft.lora.layer import set_fused
from autopeft.peft.roles import architecture_for, role_map_from_dict
from autopeft.space.config import TrialConfig
from autopeft.train import batching
from autopeft.train.first_token import use_first_token_last_layer
from autopeft.train.frozen import FrozenPrefix
from autopeft.train.measure import lr_lambda, peak_memory_mb
from autopeft.train.metrics import compute_metric
from autopeft.train.model import load_model, load_tokenizer
from autopeft.train.recipe import TrainingSpec, TrialRecipe
from autopeft.train.resources import resolve_device
from autopeft.train.state import (
    TrainState,
    config_fingerprint,
    restore_trainable,
    save_state,
    trainable_state,
)
from autopeft.train.tasks import EncodedSplit, encode, load_task

#: Weight of the newest step in the smoothed loss the divergence rule watches (an exponential moving
#: average over about 10 steps): one bad batch moves it by a tenth, a runaway loss at once.
LOSS_SMOOTHING = 0.1
#: The smallest starting loss the divergence rule scales: a model whose first loss is near 0 (a
#: classifier that already knows the task) would otherwise be flagged for ordinary noise.
MIN_REFERENCE_LOSS = 0.1


class TrainingSession:
    """Builds everything a trial trains with; `train_until(step)` advances it."""

    def __init__(self, recipe: TrialRecipe, config: TrialConfig, *, config_source: str | None = None) -> None:
        self.recipe = recipe
        self.training = recipe.training_for(config)
        self.device = resolve_device(self.training.device)
        if self.device.type == "cuda":
            # cuDNN's attention builds a new plan for every (batch, padded length): with length-grouped
            # batches that was ~1 s a step on an H100 (torch 2.11, benchmarks/gpu_throughput.py).
            # Flash and memory-efficient sdpa kernels have no such cost.
            torch.backends.cuda.enable_cudnn_sdp(False)
        if self.training.threads:  # None leaves the process's setting (the CLI and the pool always give one)
            torch.set_num_threads(self.training.threads)
        # Settings that change only speed (or only when a diverging run gives up) stay out of it: a study's
        # worker (1 thread) and `export` or `train` (all cores) must see the same trial.
        speed_only = {"threads", "eval_batch_size", "cache_max_mb", "device", "divergence_factor"}
        self.fingerprint = config_fingerprint({"config": config.model_dump(mode="json"),
                                               "recipe": recipe.model_dump(mode="json",
                                                                           exclude={"training": speed_only})})

        self.task = load_task(recipe.task, recipe.base_dir)
        self.tokenizer = load_tokenizer(recipe.model, recipe.base_dir)
        max_length = recipe.task.max_length
        self.splits: dict[str, EncodedSplit] = {
            "train": encode(self.task.train, self.tokenizer, max_length),
            "validation": encode(self.task.validation, self.tokenizer, max_length),
            "dev": encode(self.task.dev, self.tokenizer, max_length),
        }

        torch.manual_seed(self.training.seed)  # head and adapter initialisation
        self.model = load_model(recipe.model, self.task.num_labels, base_dir=recipe.base_dir,
                                pad_token_id=self.tokenizer.pad_token_id)
        arch = architecture_for(self.model, role_map_from_dict(recipe.model.role_map) if recipe.model.role_map
                                else None)
        layers = model_layers(self.model, arch)
        self.plan = PeftPlan.from_selectors(config.plan, len(layers), source=config_source)
        self.info: AdaptedModelInfo = apply_plan(self.model, self.plan, arch=arch)
        set_fused(self.model, self.training.fused)
        if self.training.fast_dropout:
            use_fast_dropout(self.model)
            enable_fast_dropout(self.model, [layer.get_submodule(arch.attention) for layer in layers])
        self.frozen: FrozenPrefix | None = None
        lowest = self.plan.lowest_adapted_layer
        lowest = len(layers) if lowest is None else lowest  # no adapter: only the head trains
        if self.training.first_token_only and lowest < len(layers):
            use_first_token_last_layer(self.model, layers)
        if self.training.frozen_cache and lowest > 0:
            self.frozen = FrozenPrefix(getattr(self.model, "base_model", self.model), layers, lowest,
                                       cache_max_bytes=self.training.cache_max_mb * 2**20)
        self.model.to(self.device)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.training.learning_rate,
                                           weight_decay=self.training.weight_decay)
        total_steps = recipe.fidelity.to_steps(recipe.fidelity.max, self.training.batch_size)
        warmup = math.ceil(self.training.warmup_ratio * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.training.lr_schedule, warmup, total_steps)
        )
        self.step = 0
        self.losses: list[float] = []
        self.smoothed_loss: float | None = None
        self.failure: str | None = None
        self.batches = _train_batches(self.splits["train"], self.training)

    @property
    def has_dev(self) -> bool:
        return len(self.splits["dev"]) > 0

    def train_until(self, stop: int, on_step: Callable[[int], None] | None = None) -> float:
        """Train steps `self.step .. stop-1`; returns the seconds spent.

        Sets `failure` (and stops before that step's update) on a non-finite loss or a diverged one
        (`diverged`).
        """
        model, split = self.model, self.splits["train"]
        model.train()
        started = time.perf_counter()
        while self.step < stop:
            indices = self.batches.batch(self.step)
            batch = self._to_device(batching.collate(split, indices, self.tokenizer.pad_token_id))
            if self.frozen is not None:
                self.frozen.before_batch([("train", i) for i in indices], [len(split.input_ids[i]) for i in indices])
            loss = model(**batch).loss
            value = float(loss.detach())
            if not math.isfinite(value):
                self.failure = f"non-finite training loss ({value}) at step {self.step + 1}"
                break
            self.failure = self.diverged(value)
            if self.failure is not None:
                break
            loss.backward()
            if self.training.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.training.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.losses.append(value)
            self.step += 1
            if on_step is not None:
                on_step(self.step)
        return time.perf_counter() - started

    def diverged(self, value: float) -> str | None:
        """Fold this step's loss into the smoothed loss; the reason to stop if the run has diverged."""
        self.smoothed_loss = smooth_loss(self.smoothed_loss, value)
        if not self.losses:
            return None  # this is the first loss: the reference
        return divergence(self.losses[0], self.smoothed_loss, self.training.divergence_factor, self.step + 1)

    def evaluate(self, split_name: str) -> dict[str, float]:
        """The task metric on a split (`validation` during search, `dev` for the final report)."""
        split = self.splits[split_name]
        if len(split) == 0:
            return {}
        logits = self.logits(split_name)
        predictions = logits[:, 0].tolist() if self.task.regression else logits.argmax(-1).tolist()
        return compute_metric(self.task.metric, predictions, split.labels)

    @torch.no_grad()
    def logits(self, split_name: str) -> torch.Tensor:
        """The model's outputs `(examples, num_labels)` on a split, in its order (float32, CPU); also what
        `autopeft evaluate` and `predict` score a file with, so they match the final report exactly."""
        split = self.splits[split_name]
        self.model.eval()
        rows: list[torch.Tensor | None] = [None] * len(split)
        for indices in batching.eval_batches(split.lengths, self.training.eval_batch_size):
            batch = self._to_device(batching.collate(split, indices, self.tokenizer.pad_token_id))
            batch.pop("labels", None)
            if self.frozen is not None:
                self.frozen.before_batch([(split_name, i) for i in indices],
                                         [len(split.input_ids[i]) for i in indices])
            logits = self.model(**batch).logits.float().cpu()
            for i, row in zip(indices, logits, strict=True):
                rows[i] = row
        self.model.train()
        return torch.stack([r for r in rows if r is not None]) if rows else torch.empty(0, self.task.num_labels)

    def peak_memory_mb(self) -> float:
        return peak_memory_mb(self.device)

    def save(self, trial_dir: Path) -> None:
        save_state(trial_dir, TrainState(
            step=self.step, adapter=trainable_state(self.model), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), rng=torch.get_rng_state(), losses=self.losses,
            fingerprint=self.fingerprint,
        ))

    def restore(self, state: TrainState) -> None:
        if state.fingerprint != self.fingerprint:
            raise ConfigError("holds the state of another configuration or recipe; use a new trial directory",
                              field="trial_dir")
        restore_trainable(self.model, state.adapter)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.rng)
        self.step, self.losses = state.step, list(state.losses)
        self.smoothed_loss = None
        for value in self.losses:
            self.smoothed_loss = smooth_loss(self.smoothed_loss, value)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def smooth_loss(previous: float | None, value: float) -> float:
    """The next exponential moving average of the training loss (the first loss starts it)."""
    return value if previous is None else previous + LOSS_SMOOTHING * (value - previous)


def divergence(start: float, smoothed: float, factor: float | None, step: int) -> str | None:
    """Why the run has diverged at ``step``, or None: the divergence rule.

    The rule: the smoothed training loss (`smooth_loss`) above ``factor`` times the first step's loss
    ``start`` (floored at `MIN_REFERENCE_LOSS`). The first loss is measured before any update, so no
    learning rate can inflate it; the average keeps one noisy batch from failing a healthy run, while a
    runaway loss (1e5 where it started at 0.69) trips it at once. NaN and inf are caught before this.
    """
    if factor is None or smoothed <= factor * max(start, MIN_REFERENCE_LOSS):
        return None
    base = f"its starting value {start:.3g}" if start >= MIN_REFERENCE_LOSS else (
        f"{MIN_REFERENCE_LOSS:g} (its starting value {start:.3g} is below that floor)")
    return f"diverged: smoothed training loss {smoothed:.3g} at step {step} is above {factor:g}x {base}"


def _train_batches(split: EncodedSplit, training: TrainingSpec) -> batching.TrainBatches:
    pool = training.length_group_size or len(split)
    return batching.TrainBatches(split.lengths, training.batch_size, seed=training.seed,
                                 mega_batch_mult=max(1, math.ceil(pool / training.batch_size)))
