"""`TrialConfig`: one configuration compiled, a PEFT plan plus the training settings a space may search.

It lives here, below `train`, because a space compiles configurations into it and the trial job runs
them: the type both layers share sits in the lower one (DESIGN.md, Layout). The recipe's training
defaults stay in `train.recipe`; `TrialRecipe.training_for` applies a configuration's overrides.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LrSchedule = Literal["linear", "cosine", "constant"]


class TrialConfig(BaseModel):
    """One configuration: a PEFT plan (layer selector -> methods) and the searched training settings."""

    model_config = ConfigDict(extra="forbid")

    plan: dict[str | int, Any] = Field(description="Layer selector (all, 3, 0-2, 0,2) -> list of methods.")
    learning_rate: float | None = Field(default=None, gt=0)
    lr_schedule: LrSchedule | None = None
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1)

    def training_overrides(self) -> dict[str, Any]:
        """The training settings this configuration sets (the unset ones keep the recipe's defaults)."""
        return {k: v for k, v in self.model_dump(exclude={"plan"}).items() if v is not None}


#: Training settings a space may search: the fields of `TrialConfig` besides the plan.
TRAINING_KEYS = tuple(name for name in TrialConfig.model_fields if name != "plan")
