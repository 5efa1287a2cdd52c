"""Prefix tuning: equal to Hugging Face `peft` on the same weights, per-layer lengths checked against
attention computed by hand, and a mixed plan (serial + parallel + prefix) that trains only adapters."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import autopeft.peft.bottleneck
import autopeft.peft.prefix  # noqa: F401  (registers the methods)
from autopeft.peft.bottleneck.layer import BottleneckAdapter
from autopeft.peft.inject import HEAD_NAMES, apply_plan, model_layers
from autopeft.peft.plan import PeftPlan
from autopeft.peft.prefix import ATTN_IMPLEMENTATION, PREFIX_ATTR, PrefixKV, extend_mask
from autopeft.peft.roles import architecture_for
from tests.conftest import TINY_MODELS, tiny_batch

LENGTHS = {0: 2, 1: 5}  # layer 2 has no prefix


def _attention(model: nn.Module, layer: int) -> Any:
    arch = architecture_for(model)
    return model_layers(model, arch)[layer].get_submodule(arch.attention)


def _prefixes(model: nn.Module) -> list[PrefixKV]:
    return [m for m in model.modules() if isinstance(m, PrefixKV)]


def _with_prefix(base: nn.Module, lengths: dict[int, int], **extra: Any) -> tuple[Any, Any]:
    model = copy.deepcopy(base)
    raw = {str(i): [{"method": "prefix", "length": n, **extra}] for i, n in lengths.items()}
    info = apply_plan(model, PeftPlan.from_selectors(raw, num_layers=3))
    return model, info


# --- equal to peft ------------------------------------------------------------------------------


def test_matches_peft_prefix_tuning(tiny_model_factory: Callable[..., nn.Module]) -> None:
    peft = pytest.importorskip("peft")
    from autopeft.export.peft_format import peft_prefix_unsupported

    if broken := peft_prefix_unsupported():
        pytest.skip(broken)
    length, num_layers = 3, 3
    base = tiny_model_factory()
    theirs = peft.get_peft_model(copy.deepcopy(base),
                                 peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=length))
    ours, info = _with_prefix(base, dict.fromkeys(range(num_layers), length))
    theirs.eval()
    ours.eval()

    # peft's prefix is one (length, num_layers * 2 * kv_heads * head_dim) table: per token, per layer
    # [keys, values], heads major. Copy each layer's part into our PrefixKV.
    table = theirs.prompt_encoder["default"].embedding.weight
    prefixes = _prefixes(ours)
    kv_heads, head_dim = prefixes[0].num_kv_heads, prefixes[0].head_dim

    def per_layer(t: torch.Tensor) -> torch.Tensor:
        return t.view(length, num_layers * 2, kv_heads, head_dim).permute(1, 2, 0, 3)

    with torch.no_grad():
        split = per_layer(table)
        for i, prefix in enumerate(prefixes):
            assert prefix.key is not None and prefix.value is not None
            prefix.key.copy_(split[2 * i])
            prefix.value.copy_(split[2 * i + 1])

    batch = tiny_batch()  # right padding of different lengths
    labels = torch.tensor([0, 1, 1])
    # peft passes the prefix as a cache, which puts the real tokens at positions length..; ours keeps
    # them at 0.. (lengths differ per layer). Give ours peft's positions to compare the rest.
    positions = torch.arange(length, length + batch["input_ids"].shape[1]).unsqueeze(0)
    out_ours = ours(**batch, labels=labels, position_ids=positions)
    out_theirs = theirs(**batch, labels=labels)
    torch.testing.assert_close(out_ours.logits, out_theirs.logits, atol=1e-5, rtol=1e-5)

    out_ours.loss.backward()
    out_theirs.loss.backward()
    assert table.grad is not None
    grad_split = per_layer(table.grad)
    for i, prefix in enumerate(prefixes):
        assert prefix.key is not None and prefix.value is not None
        torch.testing.assert_close(prefix.key.grad, grad_split[2 * i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(prefix.value.grad, grad_split[2 * i + 1], atol=1e-5, rtol=1e-5)
    head_ours = [p for n, p in ours.named_parameters() if p.requires_grad and n.split(".")[0] in HEAD_NAMES]
    head_theirs = [p for n, p in theirs.named_parameters() if p.requires_grad and "modules_to_save" in n]
    for a, b in zip(head_ours, head_theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)

    trainable, _ = theirs.get_nb_trainable_parameters()
    assert info.trainable_params == trainable


# --- per-layer lengths against attention by hand ------------------------------------------------


def _qkv_bert(attn: Any, h: torch.Tensor, _kw: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    shape = (*h.shape[:-1], -1, attn.attention_head_size)
    return tuple(proj(h).view(shape).transpose(1, 2) for proj in (attn.query, attn.key, attn.value))


def _qkv_gpt2(attn: Any, h: torch.Tensor, _kw: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    shape = (*h.shape[:-1], -1, attn.head_dim)
    return tuple(t.view(shape).transpose(1, 2) for t in attn.c_attn(h).split(attn.split_size, dim=2))


def _qkv_llama(attn: Any, h: torch.Tensor, kw: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    shape = (*h.shape[:-1], -1, attn.head_dim)
    q, k, v = (proj(h).view(shape).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    cos, sin = kw["position_embeddings"]
    q, k = apply_rotary_pos_emb(q, k, cos, sin)  # the model's rotary; prefix keys get none
    return q, k, v


#: model name -> (q/k/v of an attention module from its input, its output projection, causal)
BY_HAND: dict[str, tuple[Callable[..., tuple[torch.Tensor, ...]], Callable[[nn.Module], Any], bool]] = {
    "bert": (_qkv_bert, lambda attn: nn.Identity(), False),
    "gpt2": (_qkv_gpt2, lambda attn: attn.c_proj, True),
    "llama": (_qkv_llama, lambda attn: attn.o_proj, True),
}


def _attention_by_hand(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix: PrefixKV | None,
    padding: torch.Tensor, causal: bool, scale: float,
) -> torch.Tensor:
    """Softmax attention written out: `[prefix, keys]`, every query sees the prefix, padded keys hidden."""
    batch, heads, seq, _ = q.shape
    allowed = padding.bool()[:, None, None, :].expand(batch, 1, seq, seq)
    if causal:
        allowed = allowed & torch.ones(seq, seq, dtype=torch.bool).tril()
    if prefix is not None:
        pk, pv = prefix()
        k = torch.cat([pk.expand(batch, -1, -1, -1), k], dim=2)
        v = torch.cat([pv.expand(batch, -1, -1, -1), v], dim=2)
        allowed = torch.cat([torch.ones(batch, 1, seq, prefix.length, dtype=torch.bool), allowed], dim=-1)
    k = k.repeat_interleave(heads // k.shape[1], dim=1)
    v = v.repeat_interleave(heads // v.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, -1)


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_per_layer_lengths_match_attention_by_hand(name: str, padded: bool) -> None:
    torch.manual_seed(0)
    model, _ = _with_prefix(TINY_MODELS[name](), LENGTHS)
    model.eval()
    assert model.config._attn_implementation == ATTN_IMPLEMENTATION
    qkv, out_proj, causal = BY_HAND[name]
    seen: dict[int, tuple[torch.Tensor, dict[str, Any], torch.Tensor]] = {}
    handles = []
    for layer in range(3):
        def capture(_m: nn.Module, args: tuple, kwargs: dict, out: Any, layer: int = layer) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            seen[layer] = (hidden, kwargs, out[0])

        handles.append(_attention(model, layer).register_forward_hook(capture, with_kwargs=True))
    batch = tiny_batch() if padded else {"input_ids": tiny_batch()["input_ids"][:1].clamp(min=1)}
    with torch.no_grad():
        model(**batch)
    for handle in handles:
        handle.remove()

    padding = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
    for layer in range(3):
        attn = _attention(model, layer)
        prefix = getattr(attn, PREFIX_ATTR, None)
        assert (prefix.length if prefix is not None else 0) == LENGTHS.get(layer, 0)
        hidden, kwargs, got = seen[layer]
        with torch.no_grad():
            q, k, v = qkv(attn, hidden, kwargs)
            want = out_proj(attn)(_attention_by_hand(q, k, v, prefix, padding, causal, attn.scaling))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_padding_does_not_leak(tiny_model_factory: Callable[..., nn.Module]) -> None:
    """Each padded row scores as it does alone without padding (masks right in every prefixed layer)."""
    model, _ = _with_prefix(tiny_model_factory(), LENGTHS)
    model.eval()
    batch = tiny_batch()
    with torch.no_grad():
        logits = model(**batch).logits
        for row in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][row].sum())
            alone = model(input_ids=batch["input_ids"][row:row + 1, :n]).logits
            torch.testing.assert_close(logits[row:row + 1], alone, atol=1e-5, rtol=1e-5)


# --- pieces ---------------------------------------------------------------------------------------


def test_extend_mask_kinds() -> None:
    device = torch.device("cpu")
    boolean = torch.tensor([[True, False, True]]).view(1, 1, 1, 3).expand(2, 1, 2, 3)
    got = extend_mask(boolean, 2, q_length=2, kv_length=3, is_causal=False, device=device)
    assert got is not None and got.dtype == torch.bool and got.shape == (2, 1, 2, 5)
    assert got[..., :2].all() and torch.equal(got[..., 2:], boolean)

    additive = torch.zeros(1, 1, 2, 3).masked_fill(~boolean[:1], torch.finfo(torch.float32).min)
    got = extend_mask(additive, 4, q_length=2, kv_length=3, is_causal=True, device=device)
    assert got is not None and got.shape == (1, 1, 2, 7)
    assert (got[..., :4] == 0).all() and torch.equal(got[..., 4:], additive)

    assert extend_mask(None, 3, q_length=4, kv_length=4, is_causal=False, device=device) is None
    assert extend_mask(None, 3, q_length=1, kv_length=5, is_causal=True, device=device) is None

    # Causal with two cached keys before the three queries: query i sees keys up to 2 + i, all prefix.
    got = extend_mask(None, 1, q_length=3, kv_length=5, is_causal=True, device=device)
    assert got is not None
    expected = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(got[0, 0], expected)


def test_reparametrised_prefix(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model, info = _with_prefix(tiny_model_factory(), {1: 4}, reparam=True, reparam_hidden=6)
    (prefix,) = _prefixes(model)
    assert prefix.embedding is not None and prefix.transform is not None
    hidden, kv = int(model.config.hidden_size), prefix.num_kv_heads * prefix.head_dim
    assert info.trainable_params == 4 * hidden + (hidden * 6 + 6) + (6 * 2 * kv + 2 * kv) + info.head_params

    first, last = prefix.transform[0], prefix.transform[2]
    flat = last(torch.tanh(first(prefix.embedding.weight)))  # (length, [keys, values] heads major)
    key, value = prefix()
    assert key.shape == value.shape == (prefix.num_kv_heads, 4, prefix.head_dim)
    torch.testing.assert_close(key, flat[:, :kv].reshape(4, prefix.num_kv_heads, -1).transpose(0, 1))
    torch.testing.assert_close(value, flat[:, kv:].reshape(4, prefix.num_kv_heads, -1).transpose(0, 1))

    model(**tiny_batch()).logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prefix.parameters())


def test_prefix_initialised_like_peft() -> None:
    torch.manual_seed(0)
    prefix = PrefixKV(4000, 2, 8)
    assert prefix.key is not None
    values = prefix.key.detach()
    assert abs(float(values.mean())) < 0.02 and abs(float(values.std()) - 1.0) < 0.02


# --- a mixed plan ----------------------------------------------------------------------------------

MIXED = {
    "0": [{"method": "prefix", "length": 3}, {"method": "parallel_adapter", "size": 4}],
    "1": [{"method": "serial_adapter", "size": 3, "placement": "houlsby"}],
    "2": [{"method": "serial_adapter", "size": 2}, {"method": "parallel_adapter", "size": 2},
          {"method": "prefix", "length": 6, "reparam": True, "reparam_hidden": 8}],
}


def test_mixed_plan_trains_only_adapters_and_head(tiny_model_factory: Callable[..., nn.Module]) -> None:
    base = tiny_model_factory()
    model = copy.deepcopy(base)
    info = apply_plan(model, PeftPlan.from_selectors(MIXED, num_layers=3))
    with torch.no_grad():  # non-zero up-projections, so every adapter parameter gets a gradient
        for module in model.modules():
            if isinstance(module, BottleneckAdapter):
                module.up.weight.normal_(std=0.1)

    out = model(**tiny_batch(), labels=torch.tensor([0, 1, 0]))
    out.loss.backward()

    adapter_ids = {id(p) for m in model.modules() if isinstance(m, (BottleneckAdapter, PrefixKV))
                   for p in m.parameters()}
    heads = [getattr(model, name) for name in HEAD_NAMES if hasattr(model, name)]
    head_ids = {id(p) for head in heads for p in head.parameters()}
    assert len(adapter_ids) > 0
    for name, param in model.named_parameters():
        trainable = id(param) in adapter_ids or id(param) in head_ids
        assert param.requires_grad == trainable, name
        if trainable:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name
    assert info.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)

    # The exact count is known before anything is allocated.
    with torch.device("meta"):
        meta_model = type(base)(base.config)
    meta_info = apply_plan(meta_model, PeftPlan.from_selectors(MIXED, num_layers=3))
    assert meta_info.trainable_params == info.trainable_params
