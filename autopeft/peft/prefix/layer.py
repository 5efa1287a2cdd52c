"""Prefix tuning inside the attention function: per-layer key/value prefixes and the mask that sees them.

The prefix is concatenated to the keys and values inside the attention call rather than passed as
`past_key_values` (as `peft` does), because lengths differ between layers, and so that the real tokens
keep their positions 0..n-1 (a cache would shift them by the prefix length, which has no single value
here). Keys are concatenated after the model applied its rotary embedding, so prefix keys get none,
like cached keys in `peft`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autopeft.peft.attention import attention_core

#: Attribute of an attention module that holds its `PrefixKV`.
PREFIX_ATTR = "autopeft_prefix"


class PrefixKV(nn.Module):
    """Key and value prefixes of one attention module, each `(num_kv_heads, length, head_dim)`.

    Direct: two parameters drawn from N(0, 1) (`nn.Embedding`'s default, which `peft` uses).
    Reparametrised (Li & Liang, 2021; `peft`'s `PrefixEncoder`): an embedding `(length, hidden)` through
    `Linear -> tanh -> Linear` to both prefixes, recomputed at each call.
    """

    def __init__(
        self,
        length: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        hidden_size: int | None = None,
        reparam_hidden: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.length, self.num_kv_heads, self.head_dim = length, num_kv_heads, head_dim
        shape = (num_kv_heads, length, head_dim)
        self.key: nn.Parameter | None = None
        self.value: nn.Parameter | None = None
        self.embedding: nn.Embedding | None = None
        self.transform: nn.Sequential | None = None
        if reparam_hidden is None:
            self.key = nn.Parameter(torch.empty(shape, device=device, dtype=dtype).normal_())
            self.value = nn.Parameter(torch.empty(shape, device=device, dtype=dtype).normal_())
        else:
            if hidden_size is None:
                raise ValueError("a reparametrised prefix needs hidden_size")
            self.embedding = nn.Embedding(length, hidden_size, device=device, dtype=dtype)
            self.transform = nn.Sequential(
                nn.Linear(hidden_size, reparam_hidden, device=device, dtype=dtype),
                nn.Tanh(),
                nn.Linear(reparam_hidden, 2 * num_kv_heads * head_dim, device=device, dtype=dtype),
            )

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(key, value)`, each `(num_kv_heads, length, head_dim)`."""
        if self.key is not None and self.value is not None:
            return self.key, self.value
        assert self.embedding is not None and self.transform is not None
        # Per token: [key heads..., value heads...], the layout of one layer's slice in peft's prefix.
        kv = self.transform(self.embedding.weight).view(self.length, 2, self.num_kv_heads, self.head_dim)
        kv = kv.permute(1, 2, 0, 3)
        return kv[0], kv[1]

    def extra_repr(self) -> str:
        mode = "direct" if self.key is not None else "reparam"
        return f"length={self.length}, num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, {mode}"


def extend_mask(
    mask: torch.Tensor | None,
    prefix_length: int,
    *,
    q_length: int,
    kv_length: int,
    is_causal: bool,
    device: torch.device,
) -> torch.Tensor | None:
    """The 4-D attention mask for keys `[prefix, keys]`: every query sees every prefix position.

    `mask` is what the model built for `keys` alone: `None` (no mask, or causal through `is_causal`),
    boolean (True = attend) or additive float, shaped `(batch or 1, heads or 1, q_length, kv_length)`.
    A causal mask is made explicit, aligned to the last key (as a cache would be), since sdpa's
    `is_causal` would align it to the first key, which is now a prefix.
    """
    if mask is None:
        if not (is_causal and q_length > 1):
            return None
        rows = torch.arange(q_length, device=device)[:, None] + (kv_length - q_length)
        mask = (torch.arange(kv_length, device=device)[None, :] <= rows).view(1, 1, q_length, kv_length)
    if mask.dim() != 4:
        raise ValueError(f"prefix attention expects a 4-D attention mask, got shape {tuple(mask.shape)}")
    fill = torch.ones if mask.dtype == torch.bool else torch.zeros
    pad = fill((*mask.shape[:-1], prefix_length), dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def prefix_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """transformers attention function: `module`'s prefix (if any) in front of key and value, then
    `attention_core` (sdpa).

    `key`/`value` are `(batch, num_kv_heads, kv_length, head_dim)`, `query` `(batch, heads, q_length, ...)`.
    """
    prefix = getattr(module, PREFIX_ATTR, None)
    if not isinstance(prefix, PrefixKV):
        return attention_core(module, query, key, value, attention_mask, **kwargs)
    is_causal = kwargs.get("is_causal")
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)  # what sdpa_attention_forward would decide
    attention_mask = extend_mask(
        attention_mask, prefix.length, q_length=query.shape[2], kv_length=key.shape[2],
        is_causal=bool(is_causal), device=query.device,
    )
    if attention_mask is not None:
        kwargs["is_causal"] = False
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:  # learned relative bias (T5-like): none towards prefix positions
        kwargs["position_bias"] = nn.functional.pad(position_bias, (prefix.length, 0))
    prefix_key, prefix_value = prefix()
    batch = key.shape[0]
    key = torch.cat([prefix_key.to(key.dtype).expand(batch, -1, -1, -1), key], dim=2)
    value = torch.cat([prefix_value.to(value.dtype).expand(batch, -1, -1, -1), value], dim=2)
    return attention_core(module, query, key, value, attention_mask, **kwargs)
