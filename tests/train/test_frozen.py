"""`FrozenPrefix`: the layers below the lowest adapted one run without autograd and dropout, and their
output is cached per example. Checked on tiny BERT, GPT-2 and Llama against the same model unwrapped."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.inject import model_layers
from autopeft.peft.roles import architecture_for
from autopeft.train.frozen import FrozenPrefix, FrozenPrefixCache
from tests.conftest import set_dropout, tiny_batch

K = 2  # LoRA on layer 2 of 3 only: layers 0 and 1 are frozen
PLAN = {"2": [{"method": "lora", "r": 4, "roles": ["query", "value"]}]}




def _adapted(factory: Callable[..., nn.Module], dropout: float = 0.0) -> nn.Module:
    """A tiny model with LoRA on its top layer, adapter weights random (so the adapter changes logits)."""
    model = set_dropout(factory(), dropout)
    apply_plan(model, PeftPlan.from_selectors(PLAN, num_layers=3))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return model


def _wrap(model: nn.Module, max_bytes: int = 2**30) -> tuple[FrozenPrefix, nn.ModuleList]:
    layers = model_layers(model, architecture_for(model))
    inner = nn.ModuleList([layers[i] for i in range(K)])  # before wrapping: the real layer modules
    return FrozenPrefix(getattr(model, "base_model", model), layers, K, cache_max_bytes=max_bytes), inner


def _counters(modules: nn.ModuleList) -> list[int]:
    counts = [0] * len(modules)
    for i, module in enumerate(modules):
        def hook(*_: Any, i: int = i) -> None:
            counts[i] += 1
        module.register_forward_hook(hook)
    return counts


def _keys_lengths(batch: dict[str, torch.Tensor], ids: list[int]) -> tuple[list[tuple[str, int]], list[int]]:
    return [("train", i) for i in ids], batch["attention_mask"].sum(1).tolist()


def _rows(batch: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    """A new right-padded batch of some rows, trimmed to their longest length."""
    picked = {k: v[rows] for k, v in batch.items()}
    seq = int(picked["attention_mask"].sum(1).max())
    return {k: v[:, :seq] for k, v in picked.items()}


# --- eval: identical logits, cache miss then hit ---------------------------------------------------


def test_eval_identical_on_miss_and_hit(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _adapted(tiny_model_factory)
    reference = copy.deepcopy(model).eval()
    frozen, inner = _wrap(model)
    calls = _counters(inner)
    model.eval()
    batch = tiny_batch()
    keys, lengths = _keys_lengths(batch, [0, 1, 2])
    with torch.no_grad():
        expected = reference(**batch).logits
        frozen.before_batch(keys, lengths)
        first = model(**batch).logits
        assert (frozen.cache.misses, frozen.cache.hits, calls) == (1, 0, [1, 1])
        assert len(frozen.cache) == 3
        assert frozen.cache.bytes == sum(lengths) * 32 * 4  # float32 rows of hidden size 32, padding not kept

        frozen.before_batch(keys, lengths)
        second = model(**batch).logits
    assert (frozen.cache.misses, frozen.cache.hits) == (1, 1)
    assert calls == [1, 1], "a cache hit must not run the frozen layers"
    torch.testing.assert_close(first, expected, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(second, expected, atol=1e-6, rtol=0.0)


def test_padded_rows_regrouped_from_cache(tiny_model_factory: Callable[..., nn.Module]) -> None:
    """Rows cached from one batch, served in other batches of other lengths, give the same logits."""
    model = _adapted(tiny_model_factory)
    reference = copy.deepcopy(model).eval()
    frozen, inner = _wrap(model)
    calls = _counters(inner)
    model.eval()
    batch = tiny_batch(batch=4, seq=9)
    with torch.no_grad():
        frozen.before_batch(*_keys_lengths(batch, [0, 1, 2, 3]))
        model(**batch)
        for rows in ([3, 1], [2], [1, 0, 3], [3]):
            sub = _rows(batch, rows)
            frozen.before_batch(*_keys_lengths(sub, rows))
            assert frozen.hit
            got = model(**sub).logits
            torch.testing.assert_close(got, reference(**sub).logits, atol=1e-6, rtol=0.0)
            for j, row in enumerate(rows):  # the real row alone, without padding
                alone = _rows(batch, [row])
                torch.testing.assert_close(got[j], reference(**alone).logits[0], atol=1e-5, rtol=1e-5)
    assert calls == [1, 1]
    assert frozen.cache.hits == 4


# --- training: frozen layers in eval, no autograd; upper layers train ---------------------------------


def test_train_mode_keeps_frozen_part_in_eval(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _adapted(tiny_model_factory, dropout=0.3)
    reference = copy.deepcopy(model).eval()
    frozen, inner = _wrap(model)
    model.train()

    layers = model_layers(model, architecture_for(model))
    assert all(not m.training for layer in inner for m in layer.modules())
    assert all(m.training for m in layers[K].modules()), "the adapted layer trains"
    base = getattr(model, "base_model", model)
    for attr in ("embeddings", "drop"):  # BERT's embeddings (with dropout), GPT-2's embedding dropout
        module = getattr(base, attr, None)
        if isinstance(module, nn.Module):
            assert all(not m.training for m in module.modules())
            model.train(True)  # still in eval after a second train()
            assert not module.training

    # The last frozen layer's output is the deterministic eval output, whatever the dropout seed.
    outputs: list[torch.Tensor] = []
    inner[K - 1].register_forward_hook(lambda _m, _a, out: outputs.append(out[0] if isinstance(out, tuple) else out))
    ref_inner = model_layers(reference, architecture_for(reference))[K - 1]
    ref_inner.register_forward_hook(lambda _m, _a, out: outputs.append(out[0] if isinstance(out, tuple) else out))
    batch = tiny_batch()
    logits = []
    for seed, ids in ((1, [0, 1, 2]), (2, [3, 4, 5])):  # new keys: both are misses and run the layers
        torch.manual_seed(seed)
        frozen.before_batch(*_keys_lengths(batch, ids))
        logits.append(model(**batch).logits)
    with torch.no_grad():
        reference(**batch)
    assert len(outputs) == 3
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(outputs[0][mask], outputs[2][mask], atol=1e-6, rtol=0.0)
    torch.testing.assert_close(outputs[1][mask], outputs[2][mask], atol=1e-6, rtol=0.0)
    assert not torch.equal(logits[0], logits[1]), "dropout above the frozen prefix still acts in training"


def test_gradients_reach_adapter_only(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _adapted(tiny_model_factory)
    reference = copy.deepcopy(model)
    frozen, inner = _wrap(model)
    # Even a frozen-layer or embedding parameter that asks for a gradient must not get one.
    base = getattr(model, "base_model", model)
    watched = [*inner.parameters(), *next(base.children()).parameters()]
    for param in watched:
        param.requires_grad_(True)
    model.train()
    reference.train()
    batch = tiny_batch()
    labels = torch.tensor([0, 1, 1])
    keys = _keys_lengths(batch, [0, 1, 2])

    reference(**batch, labels=labels).loss.backward()
    expected = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
    assert any("lora" in n for n in expected)

    for _ in range(2):  # miss, then hit
        model.zero_grad(set_to_none=True)
        frozen.before_batch(*keys)
        model(**batch, labels=labels).loss.backward()
        assert all(p.grad is None for p in watched)
        got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert got.keys() == expected.keys()
        for name, grad in expected.items():
            assert grad.abs().sum() > 0, name
            torch.testing.assert_close(got[name], grad, atol=1e-6, rtol=1e-5)
    assert frozen.cache.hits == 1


# --- the memory cap ----------------------------------------------------------------------------------


def test_cache_respects_max_bytes(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _adapted(tiny_model_factory)
    reference = copy.deepcopy(model).eval()
    batch = tiny_batch()  # lengths 7, 6, 5 -> rows of 7*32*4, 6*32*4, 5*32*4 bytes
    keys, lengths = _keys_lengths(batch, [0, 1, 2])
    cap = (lengths[0] + lengths[1]) * 32 * 4 + 100
    frozen, inner = _wrap(model, max_bytes=cap)
    calls = _counters(inner)
    model.eval()
    with torch.no_grad():
        frozen.before_batch(keys, lengths)
        model(**batch)
        assert frozen.cache.full
        assert len(frozen.cache) == 2
        assert frozen.cache.bytes <= cap
        stored = frozen.cache.bytes

        other = tiny_batch(seed=5)
        frozen.before_batch(*_keys_lengths(other, [7, 8, 9]))
        model(**other)
        assert (len(frozen.cache), frozen.cache.bytes) == (2, stored), "a full cache stores no more rows"

        frozen.before_batch(keys, lengths)  # one row missing: a miss, the layers run again
        assert not frozen.hit
        got = model(**batch).logits
        assert calls == [3, 3]
        torch.testing.assert_close(got, reference(**batch).logits, atol=1e-6, rtol=0.0)

        sub = _rows(batch, [1, 0])  # rows that did fit are still served from the cache
        frozen.before_batch(*_keys_lengths(sub, [1, 0]))
        torch.testing.assert_close(model(**sub).logits, reference(**sub).logits, atol=1e-6, rtol=0.0)
        assert calls == [3, 3]


def test_cache_with_zero_bytes_stores_nothing() -> None:
    cache = FrozenPrefixCache(0)
    cache.store([("train", 0)], [3], torch.ones(1, 4, 8))
    assert cache.full and len(cache) == 0 and cache.bytes == 0
    assert not cache.has_all([("train", 0)])


@pytest.mark.parametrize("k", [0, 4])
def test_prefix_size_must_fit_the_layers(k: int) -> None:
    from tests.conftest import tiny_bert

    model = tiny_bert()
    with pytest.raises(ValueError, match="0 < k <= 3"):
        FrozenPrefix(model.get_submodule("bert"), model_layers(model, architecture_for(model)), k, cache_max_bytes=1)
