"""Attach prefix tuning to one layer, and switch the model to the attention function that applies it."""

from __future__ import annotations

from autopeft.errors import UnsupportedArchitectureError
from autopeft.peft.attention import use_autopeft_attention
from autopeft.peft.context import LayerContext
from autopeft.peft.prefix.config import PrefixSpec
from autopeft.peft.prefix.layer import PREFIX_ATTR, PrefixKV


def attach_prefix(ctx: LayerContext, spec: PrefixSpec) -> None:
    """Give the layer's attention module a `PrefixKV` of `spec.length` virtual tokens."""
    use_autopeft_attention(ctx.model)
    attention = ctx.attention()
    if isinstance(getattr(attention, PREFIX_ATTR, None), PrefixKV):
        raise UnsupportedArchitectureError(f"layer {ctx.index}: attention already has a prefix")
    like = next(attention.parameters())
    prefix = PrefixKV(
        spec.length, ctx.num_kv_heads, ctx.head_dim,
        hidden_size=ctx.hidden_size, reparam_hidden=spec.reparam_hidden if spec.reparam else None,
        device=like.device, dtype=like.dtype,
    )
    setattr(attention, PREFIX_ATTR, prefix)
