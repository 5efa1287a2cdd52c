"""What a trial reports: every objective value at the fidelity it reached, and how it ended."""

from __future__ import annotations

from pydantic import BaseModel, Field

from autopeft.status import TrialStatus  # complete, pruned (stopped at a checkpoint) or failed

__all__ = ["TrialResult", "TrialStatus"]


class TrialResult(BaseModel):
    """One trial at one fidelity. `score` is the task's primary metric on the search validation split."""

    status: TrialStatus
    error: str | None = None
    fidelity: int = Field(description="Fidelity reached, in the recipe's unit.")
    fidelity_unit: str
    steps: int
    start_step: int = Field(default=0, description="The step this job started at: above 0 where it continued "
                            "a checkpoint (a promoted or retried trial), so a trial's history shows it resumed.")
    score: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    dev_metrics: dict[str, float] | None = Field(default=None, description="Held-back dev split, when asked.")
    train_loss: float | None = Field(default=None, description="Mean training loss over the last steps.")
    trainable_params: int
    trainable_share: float = Field(description="Trainable parameters / base model parameters.")
    train_seconds: float = Field(description="Wall time in training steps (evaluation excluded).")
    examples_per_second: float
    peak_memory_mb: float = Field(description="Peak RSS of the process on CPU; peak allocated on CUDA.")
    threads: int | None = Field(default=None, description="CPU threads torch used (`torch.get_num_threads()`).")
    device: str | None = Field(default=None, description="The device it trained on: cpu, cuda:0, ...")
