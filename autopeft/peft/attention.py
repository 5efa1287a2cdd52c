"""autopeft's attention function for transformers' `AttentionInterface`.

One registered implementation, `autopeft`, serves two needs, so they compose on one model:
- prefix tuning: a module's `PrefixKV` is put in front of key and value (see `peft/prefix/layer.py`);
- faster attention-probability dropout on the CPU (`kernels/dropout.py`) where a trial turns it on.

Everything else is delegated to transformers' own sdpa function, so masks, GQA and causal handling
stay theirs. Only with fast dropout do we run the attention arithmetic ourselves (the same "math" path
torch's sdpa takes on the CPU whenever dropout is on, with our mask source instead of `bernoulli_`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autopeft.errors import UnsupportedArchitectureError
from autopeft.peft.kernels.dropout import fast_dropout

ATTN_IMPLEMENTATION = "autopeft"
#: Attribute set on attention modules whose probability dropout should use `fast_dropout`.
FAST_DROPOUT_ATTR = "autopeft_fast_dropout"


@functools.cache
def _sdpa() -> Callable[..., tuple[torch.Tensor, Any]]:
    # Imported on first use: the module pulls in much of transformers (seconds).
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def attention_core(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """sdpa, or on the CPU with dropout and fast dropout enabled, the same arithmetic with our dropout."""
    dropout = float(kwargs.get("dropout", 0.0) or 0.0)
    if dropout > 0 and query.device.type == "cpu" and getattr(module, FAST_DROPOUT_ATTR, False):
        return _math_attention(module, query, key, value, attention_mask, **kwargs)
    return _sdpa()(module, query, key, value, attention_mask, **kwargs)


def _math_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, *, dropout: float, scaling: float | None = None,
                    is_causal: bool | None = None, position_bias: torch.Tensor | None = None,
                    **_: Any) -> tuple[torch.Tensor, None]:
    groups = int(getattr(module, "num_key_value_groups", 1) or 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    q_len, kv_len = query.shape[2], key.shape[2]
    scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if position_bias is not None:
        scores = scores + position_bias
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    elif causal and q_len > 1:
        visible = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
        scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = fast_dropout(probs, dropout, True)
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> None:
    """Register `autopeft` and sdpa's mask builder under the same name (the model then builds exactly
    the masks it builds for sdpa). Idempotent."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    from autopeft.peft.prefix.layer import prefix_attention_forward

    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def use_autopeft_attention(model: nn.Module) -> None:
    """Make every attention module of `model` call autopeft's attention function (sdpa underneath)."""
    register_attention()
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedArchitectureError("this needs a transformers model (it has no `config`)")
    if getattr(config, "_attn_implementation", None) == ATTN_IMPLEMENTATION:
        return
    set_impl = getattr(model, "set_attn_implementation", None)
    if callable(set_impl):
        set_impl(ATTN_IMPLEMENTATION)  # also reaches sub-models with their own config
    else:
        config._attn_implementation = ATTN_IMPLEMENTATION
    if config._attn_implementation != ATTN_IMPLEMENTATION:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} cannot switch its attention implementation; autopeft's attention "
            "needs modules that call transformers' ALL_ATTENTION_FUNCTIONS.get_interface"
        )


def enable_fast_dropout(model: nn.Module, attention_modules: list[nn.Module]) -> None:
    """Use `fast_dropout` for attention probabilities in these modules (they must call the interface)."""
    use_autopeft_attention(model)
    for module in attention_modules:
        setattr(module, FAST_DROPOUT_ATTR, True)
