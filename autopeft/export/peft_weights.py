"""Reading a `peft` adapter's weights back into an autopeft model adapted by the same plan.

The inverse of `peft_format.save_peft_adapter`'s tensors: `lora_A` rows, `lora_B` diagonal blocks (a fused
projection's roles), DoRA magnitudes and IA3 vectors split back over our per-role modules, the prefix
table back into per-layer keys and values, and `modules_to_save` (the head) copied as they are. So
`autopeft evaluate` scores a `train` output in `peft` format with autopeft's own forward pass: the
same numbers the final report measured.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from autopeft.errors import ConfigError
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.ia3.layer import IA3Vector
from autopeft.peft.lora.layer import DoraDelta, LoraDelta
from autopeft.peft.prefix.layer import PrefixKV

_PREFIXES = ("base_model.model.", "base_model.")  # tuners that wrap the model; prompt methods that hold it
_PIECES = (".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector", ".ia3_l")


@torch.no_grad()
def load_peft_weights(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Copy `adapter_model.safetensors`' tensors into `model` (its layers unwrapped: `unwrap.plain_layers`).

    Raises `ConfigError` when a key or a shape does not fit the model's adapters.
    """
    for key, value in tensors.items():
        name = key
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        try:
            _load_one(model, name, value)
        except (AttributeError, RuntimeError, ValueError) as err:
            raise ConfigError(f"{key} does not fit the model adapted by the plan ({type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None


def _load_one(model: nn.Module, name: str, value: torch.Tensor) -> None:
    if name == "prompt_embeddings":
        _set_prefix_table(model, value)
        return
    suffix = next((s for s in _PIECES if name.endswith(s)), None)
    if suffix is None:  # modules_to_save: the classifier head, trained in place
        _copy(model.get_parameter(name), value)
        return
    linear = model.get_submodule(name.removesuffix(suffix))
    if not isinstance(linear, AdaptedLinear):
        raise ValueError("the module is not adapted by autopeft")
    _set_piece(linear, suffix, value)


def _copy(target: torch.Tensor, value: torch.Tensor) -> None:
    if target.numel() != value.numel():
        raise ValueError(f"shape {tuple(value.shape)}, the model's is {tuple(target.shape)}")
    target.copy_(value.reshape(target.shape))


def _split_copy(targets: list[torch.Tensor], value: torch.Tensor) -> None:
    """`value` is the concatenation of `targets` along their first dimension (flattened for vectors)."""
    sizes = [t.shape[0] if value.dim() > 1 else t.numel() for t in targets]
    if sum(sizes) != (value.shape[0] if value.dim() > 1 else value.numel()) or not targets:
        raise ValueError(f"shape {tuple(value.shape)} does not split into {len(targets)} parts of {sizes}")
    for target, part in zip(targets, torch.split(value if value.dim() > 1 else value.flatten(), sizes), strict=True):
        _copy(target, part)


def _set_piece(linear: AdaptedLinear, suffix: str, value: torch.Tensor) -> None:
    if suffix == ".ia3_l":
        inputs = [v for v in linear.input_transforms if isinstance(v, IA3Vector)]
        vectors = inputs or sorted((v for v in linear.output_transforms if isinstance(v, IA3Vector)),
                                   key=lambda v: v.span.start)
        _split_copy([v.vector for v in vectors], value.flatten())
        return
    deltas = sorted((d for d in linear.deltas if isinstance(d, LoraDelta)), key=lambda d: d.out_slice.start)
    if suffix == ".lora_A.weight":
        _split_copy([d.lora_A for d in deltas], value)
    elif suffix == ".lora_magnitude_vector":
        _split_copy([d.magnitude for d in deltas if isinstance(d, DoraDelta)], value.flatten())
    else:  # lora_B: block-diagonal over the fused projection's roles
        row = col = 0
        for d in deltas:
            out, r = d.lora_B.shape
            _copy(d.lora_B, value[row:row + out, col:col + r])
            row, col = row + out, col + r
        if (row, col) != tuple(value.shape):
            raise ValueError(f"shape {tuple(value.shape)}, the model's blocks add up to {(row, col)}")


def _set_prefix_table(model: nn.Module, table: torch.Tensor) -> None:
    """`peft`'s prompt table `(length, layers * 2 * kv_heads * head_dim)` back into each layer's key and value."""
    prefixes = [m for m in model.modules() if isinstance(m, PrefixKV)]
    if not prefixes or any(p.key is None or p.value is None for p in prefixes):
        raise ValueError("the model has no direct (not reparametrised) prefixes")
    first = prefixes[0]
    parts = table.reshape(first.length, 2 * len(prefixes), first.num_kv_heads, first.head_dim).permute(1, 2, 0, 3)
    for i, prefix in enumerate(prefixes):
        assert prefix.key is not None and prefix.value is not None
        _copy(prefix.key, parts[2 * i])
        _copy(prefix.value, parts[2 * i + 1])
