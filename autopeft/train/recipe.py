"""Trial recipes and trial configurations, as read from YAML.

A *recipe* (`trials/*.yaml`) fixes what every trial of a study shares: the model, the task, the
fidelity unit and range, and the training defaults. A *configuration* is one point of a search
space: a PEFT plan (layer selectors to methods) plus the training settings the search may vary; its type,
`TrialConfig`, lives in `autopeft.space.config` (a space compiles into it), and is read from YAML here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from autopeft.peft.plan import check_methods
from autopeft.space.config import LrSchedule, TrialConfig
from autopeft.train.resources import device_error
from autopeft.train.tasks import TaskSpec
from autopeft.yamlio import read_yaml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """Which pretrained transformer to adapt."""

    name: str = Field(description="`minilm-l6` (packaged weights), a local directory, or a Hugging Face id.")
    role_map: dict[str, Any] | None = Field(
        default=None, description="For architectures without a built-in map: layers, attention, roles."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(default="float32", description="Weights dtype.")


class FidelitySpec(_Strict):
    """How much training a trial gets: the unit and the range a scheduler may use."""

    unit: Literal["steps", "examples"] = Field(default="steps", description="Training steps or examples seen.")
    min: int = Field(gt=0, description="Smallest fidelity a scheduler may stop a trial at.")
    max: int = Field(gt=0, description="Full fidelity: a complete trial.")

    @model_validator(mode="after")
    def _ordered(self) -> FidelitySpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self

    def to_steps(self, value: int, batch_size: int) -> int:
        return value if self.unit == "steps" else math.ceil(value / batch_size)

    def from_steps(self, steps: int, batch_size: int) -> int:
        return steps if self.unit == "steps" else steps * batch_size


class TrainingSpec(_Strict):
    """Training defaults shared by every trial; a configuration may override the learning-rate fields."""

    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(default=128, gt=0)
    learning_rate: float = Field(default=5e-4, gt=0)
    lr_schedule: LrSchedule = Field(default="linear", description="Decay after warmup, over the full fidelity.")
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Gradient clipping; null turns it off.")
    divergence_factor: float | None = Field(
        default=10.0, gt=1,
        description="Fail the trial as diverged once its smoothed training loss exceeds this many times its "
        "first loss (floored at 0.1); null turns the check off.",
    )
    seed: int = Field(default=0, description="Seeds weights of new modules, data order and dropout.")
    threads: int | None = Field(
        default=None, gt=0,
        description="CPU threads of a trial (`--threads` overrides it); default: the cores this process may "
        "use, split between a study's workers.",
    )
    device: str = Field(default="auto", description="auto (a GPU if torch sees one), cpu, cuda or cuda:N "
                        "(`--device` overrides it).")
    frozen_cache: bool = Field(
        default=True,
        description="Run the frozen layers below the lowest adapted layer without autograd and without "
        "dropout, and cache their outputs across epochs (see README: what this changes).",
    )
    cache_max_mb: int = Field(default=1024, ge=0, description="Memory cap of that cache.")
    fused: bool = Field(default=True, description="Use the fused adapter paths (False: plain reference path).")
    first_token_only: bool = Field(
        default=True,
        description="BERT-family classifiers: compute only the first token in the last layer (exact; "
        "the head reads nothing else).",
    )
    fast_dropout: bool = Field(
        default=True, description="On the CPU, draw dropout masks from 16 random bits per element (~3x cheaper)."
    )
    length_group_size: int | None = Field(
        default=None, gt=0,
        description="Examples sorted by length together before batching: null = the whole epoch (least "
        "padding); 50 x batch_size reproduces the HF Trainer's group_by_length.",
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        error = device_error(value)
        if error is not None:
            raise ValueError(error)
        return value


class TrialRecipe(_Strict):
    """Everything a trial needs besides its configuration and fidelity."""

    name: str = "trial"
    model: ModelSpec
    task: TaskSpec
    fidelity: FidelitySpec
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    _source_dir: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the recipe are resolved against (the recipe file's folder)."""
        return self._source_dir or Path.cwd()

    def training_for(self, config: TrialConfig) -> TrainingSpec:
        """These training defaults with ``config``'s overrides applied."""
        return self.training.model_copy(update=config.training_overrides())


def load_recipe(path: str | Path) -> TrialRecipe:
    """Read and validate a trial recipe; relative task paths resolve against the recipe's folder."""
    path = Path(path)
    recipe = validate(TrialRecipe, read_yaml(path), source=str(path))
    recipe._source_dir = path.resolve().parent
    return recipe


def load_config(path: str | Path) -> TrialConfig:
    """Read a configuration; its methods are checked now, its layer selectors when the model is known."""
    path = Path(path)
    config = validate(TrialConfig, read_yaml(path), source=str(path))
    check_methods(config.plan, source=str(path))
    return config
