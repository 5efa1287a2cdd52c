"""The frozen layers below the lowest adapted one: run without autograd and cached across epochs.

When a plan adapts only layers k and above, nothing below layer k is trained and no gradient needs to
flow there. We run the embeddings and layers 0..k-1 under `torch.no_grad()` in eval mode (no dropout),
which makes their output a pure function of the example, and keep layer k-1's output per example so
later epochs (and every evaluation of the validation split) skip those layers entirely.

What this changes: the frozen layers see no dropout during training. The README says so, and the
throughput benchmark reports the dev score with it on and off.

This wraps the layer modules rather than re-implementing each model's forward (masks, rotary
positions, ...) so it works for every architecture the role maps cover.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch import nn

from autopeft.train.wrapper import LayerWrapper

#: Embedding-side modules (with dropout) that sit before the first layer, by architecture.
_EMBEDDING_ATTRS = ("embeddings", "drop", "embed_dropout")


class FrozenPrefixCache:
    """Per-example outputs of the last frozen layer, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.full = False
        self._rows: dict[Hashable, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def has_all(self, keys: Sequence[Hashable]) -> bool:
        return all(k in self._rows for k in keys)

    def store(self, keys: Sequence[Hashable], lengths: Sequence[int], hidden: torch.Tensor) -> None:
        for row, (key, length) in enumerate(zip(keys, lengths, strict=True)):
            if key in self._rows:
                continue
            value = hidden[row, :length].detach().clone()
            size = value.numel() * value.element_size()
            if self.bytes + size > self.max_bytes:
                self.full = True
                return
            self._rows[key] = value
            self.bytes += size

    def assemble(self, keys: Sequence[Hashable], seq_len: int) -> torch.Tensor:
        """A right-padded (batch, seq_len, hidden) tensor; padding rows are zero (they are masked)."""
        first = self._rows[keys[0]]
        out = first.new_zeros((len(keys), seq_len, first.shape[-1]))
        for row, key in enumerate(keys):
            value = self._rows[key]
            out[row, : value.shape[0]] = value
        return out


class _FrozenLayer(LayerWrapper):
    """Wraps one frozen layer: eval mode always, no autograd, pass-through on a cache hit."""

    def __init__(self, layer: nn.Module, runner: FrozenPrefix, is_last: bool) -> None:
        super().__init__(layer)
        self.runner = runner
        self.is_last = is_last

    def train(self, mode: bool = True) -> _FrozenLayer:
        super().train(mode)
        self.layer.eval()
        return self

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        runner = self.runner
        if runner.hit:
            if not self.is_last:
                return hidden_states
            cached = runner.cached_output(hidden_states)
            runner.done()
            return cached
        with torch.no_grad():
            out = self.layer(hidden_states, *args, **kwargs)
        if self.is_last:
            runner.remember(out[0] if isinstance(out, tuple) else out)
            runner.done()
        return out


class FrozenPrefix:
    """Installs `_FrozenLayer` wrappers on layers 0..k-1 of `layers` and drives the cache.

    Call `before_batch(keys, lengths)` before each forward pass; keys must identify the example
    (e.g. `("train", index)`) and lengths are the unpadded token counts.
    """

    def __init__(self, base_model: nn.Module, layers: nn.ModuleList, k: int, *, cache_max_bytes: int) -> None:
        if not 0 < k <= len(layers):
            raise ValueError(f"frozen prefix needs 0 < k <= {len(layers)}, got {k}")
        self.k = k
        self.cache = FrozenPrefixCache(cache_max_bytes)
        self.hit = False
        self._keys: Sequence[Hashable] = ()
        self._lengths: Sequence[int] = ()
        for i in range(k):
            layers[i] = _FrozenLayer(layers[i], self, is_last=i == k - 1)
        embedding_modules = [getattr(base_model, a, None) for a in _EMBEDDING_ATTRS]
        for module in (m for m in embedding_modules if isinstance(m, nn.Module)):
            module.train = _stay_in_eval(module)  # type: ignore[method-assign]
            module.eval()

    def before_batch(self, keys: Sequence[Hashable], lengths: Sequence[int]) -> None:
        self._keys, self._lengths = keys, lengths
        self.hit = self.cache.has_all(keys)
        if self.hit:
            self.cache.hits += 1
        else:
            self.cache.misses += 1

    def cached_output(self, like: torch.Tensor) -> torch.Tensor:
        return self.cache.assemble(self._keys, like.shape[1]).to(like.dtype)

    def remember(self, hidden: torch.Tensor) -> None:
        if not self.cache.full and self._keys:
            self.cache.store(self._keys, self._lengths, hidden)

    def done(self) -> None:
        """Forget the batch: a forward pass without `before_batch` then computes and caches nothing."""
        self.hit, self._keys, self._lengths = False, (), ()


def _stay_in_eval(module: nn.Module) -> Any:
    """A replacement `train()` that keeps `module` (and its dropout) in eval mode."""
    original_train = type(module).train

    def train(mode: bool = True) -> nn.Module:
        original_train(module, False)
        return module

    return train
