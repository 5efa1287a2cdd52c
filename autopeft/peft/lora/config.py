"""LoRA and DoRA settings for one layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from autopeft.peft.roles import Role
from autopeft.peft.spec import MethodSpecBase


class LoraSpec(MethodSpecBase):
    """Low-rank update `W + (alpha / r) * B @ A` on the chosen projections of one layer (Hu et al., 2021)."""

    method: Literal["lora"] = "lora"
    r: int = Field(gt=0, description="Rank of the update; must be > 0.")
    alpha: float = Field(default=16.0, gt=0, description="Scaling numerator: the update is scaled by alpha/r.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input path only.")
    rslora: bool = Field(default=False, description="Scale by alpha/sqrt(r) (rank-stabilised LoRA).")
    roles: tuple[Role, ...] = Field(
        default=(Role.QUERY, Role.VALUE), min_length=1, description="Projections that carry the update."
    )

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: tuple[Role, ...]) -> tuple[Role, ...]:
        if len(set(roles)) != len(roles):
            raise ValueError("roles must not repeat")
        return roles

    @property
    def scaling(self) -> float:
        return self.alpha / (self.r**0.5 if self.rslora else self.r)


class DoraSpec(LoraSpec):
    """LoRA with a learned per-output-channel magnitude (Liu et al., 2024): a variant of LoRA, not a copy."""

    method: Literal["dora"] = "dora"  # type: ignore[assignment]
