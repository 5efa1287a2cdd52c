"""Attach prefix tuning to one layer, and switch the model to the attention function that applies it."""

from __future__ import annotations

from torch import nn

from autopeft.errors import UnsupportedArchitectureError
from autopeft.peft.context import LayerContext
from autopeft.peft.prefix.config import PrefixSpec
from autopeft.peft.prefix.layer import PREFIX_ATTR, PrefixKV, prefix_attention_forward

#: Name of our attention implementation in transformers' `AttentionInterface`.
ATTN_IMPLEMENTATION = "autopeft_prefix"


def register_attention() -> None:
    """Register the prefix attention function, and sdpa's mask builder under the same name, so the
    model builds exactly the masks it builds for sdpa (the function hands them on to sdpa). Idempotent."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def use_prefix_attention(model: nn.Module) -> None:
    """Make every attention module of `model` call the prefix attention function.

    Modules without a prefix then run plain sdpa, whatever implementation the model used before
    (eager and sdpa agree up to rounding).
    """
    register_attention()
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedArchitectureError("prefix tuning needs a transformers model (it has no `config`)")
    if getattr(config, "_attn_implementation", None) == ATTN_IMPLEMENTATION:
        return
    set_impl = getattr(model, "set_attn_implementation", None)
    if callable(set_impl):
        set_impl(ATTN_IMPLEMENTATION)  # also reaches sub-models with their own config
    else:
        config._attn_implementation = ATTN_IMPLEMENTATION
    if config._attn_implementation != ATTN_IMPLEMENTATION:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} cannot switch its attention implementation; prefix tuning needs "
            "attention modules that call transformers' ALL_ATTENTION_FUNCTIONS.get_interface"
        )


def attach_prefix(ctx: LayerContext, spec: PrefixSpec) -> None:
    """Give the layer's attention module a `PrefixKV` of `spec.length` virtual tokens."""
    use_prefix_attention(ctx.model)
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
