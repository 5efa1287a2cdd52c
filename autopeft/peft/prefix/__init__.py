"""Prefix tuning (Li & Liang, 2021) with a length per layer, through transformers' attention interface."""

from autopeft.peft.attention import ATTN_IMPLEMENTATION, use_autopeft_attention
from autopeft.peft.prefix.config import PrefixSpec
from autopeft.peft.prefix.layer import PREFIX_ATTR, PrefixKV, extend_mask, prefix_attention_forward
from autopeft.peft.prefix.model import attach_prefix
from autopeft.peft.registry import MethodInfo, PeftEquivalent, register

register(MethodInfo(name="prefix", spec_type=PrefixSpec, attach=attach_prefix, order=50,
                    peft=PeftEquivalent("PREFIX_TUNING", "prefix tuning")))

__all__ = [
    "ATTN_IMPLEMENTATION",
    "PREFIX_ATTR",
    "PrefixKV",
    "PrefixSpec",
    "attach_prefix",
    "extend_mask",
    "prefix_attention_forward",
    "use_autopeft_attention",
]
