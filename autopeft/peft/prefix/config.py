"""Prefix-tuning settings for one layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autopeft.peft.spec import MethodSpecBase


class PrefixSpec(MethodSpecBase):
    """Learned key/value vectors prepended to one layer's attention (Li & Liang, 2021).

    Lengths may differ from layer to layer. With `reparam`, the prefix is produced by a two-layer MLP
    from a smaller embedding during training (as in the paper) and its trainable size counts that MLP.
    """

    method: Literal["prefix"] = "prefix"
    length: int = Field(gt=0, description="Number of virtual tokens in this layer; must be > 0.")
    reparam: bool = Field(default=False, description="Produce the prefix through an MLP (reparametrisation).")
    reparam_hidden: int = Field(default=512, gt=0, description="Hidden width of the reparametrisation MLP.")
