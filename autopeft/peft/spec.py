"""The base of every method's per-layer settings: the `method` tag the plan's union is discriminated on."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MethodSpecBase(BaseModel):
    """One method's settings for one layer; each method narrows `method` to its registered name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
