"""autopeft's attention function with fast dropout on the CPU (the "math" path).

Checked on tiny BERT, GPT-2 and Llama in training mode with attention dropout > 0:
- against transformers' own eager attention drawing its masks from the same `fast_dropout` calls
  (same seed, same order of draws: the same masks), logits and gradients;
- with no element dropped, against sdpa (with and without a prefix), so masks, GQA and causal
  handling match what transformers builds;
- determinism under a seed, and prefix tuning composed with fast dropout (gradients reach the prefix).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import autopeft.peft.attention as attention_module
from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.attention import ATTN_IMPLEMENTATION, enable_fast_dropout, use_autopeft_attention
from autopeft.peft.inject import model_layers
from autopeft.peft.kernels.dropout import fast_dropout, use_fast_dropout
from autopeft.peft.prefix import PrefixKV
from autopeft.peft.roles import architecture_for
from tests.conftest import set_dropout, tiny_batch

P = 0.2
LABELS = torch.tensor([0, 1, 1])




def _attentions(model: nn.Module) -> list[nn.Module]:
    arch = architecture_for(model)
    return [layer.get_submodule(arch.attention) for layer in model_layers(model, arch)]


def _attention_dropout_only(model: nn.Module, p: float) -> nn.Module:
    """Hidden dropouts off, attention-probability dropout at `p` (however the architecture holds it)."""
    set_dropout(model, 0.0)
    for attn in _attentions(model):
        for name in ("dropout", "attn_dropout"):
            module = getattr(attn, name, None)
            if isinstance(module, nn.Dropout):
                module.p = p
        if isinstance(getattr(attn, "attention_dropout", None), float):
            attn.attention_dropout = p  # type: ignore[assignment]
    return model


def _fast(model: nn.Module) -> nn.Module:
    """What a training session does: fast dropout modules, and the math path in every attention."""
    use_fast_dropout(model)
    enable_fast_dropout(model, _attentions(model))
    return model


def _with_prefix(model: nn.Module, length: int = 3) -> nn.Module:
    apply_plan(model, PeftPlan.from_selectors({"all": [{"method": "prefix", "length": length}]}, num_layers=3))
    for param in model.parameters():
        param.requires_grad_(True)  # compare gradients of every weight, not only the prefix
    return model


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


class _CountingDropout:
    """Wraps `fast_dropout` as the attention module sees it; records the shapes it drops."""

    def __init__(self, replace: Callable[..., torch.Tensor] | None = None) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.replace = replace

    def __call__(self, x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.replace(x, p, training) if self.replace else fast_dropout(x, p, training)


# --- the math path against transformers' eager attention, same masks ---------------------------------


def test_math_path_equals_eager_with_the_same_masks(tiny_model_factory: Callable[..., nn.Module],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    base = set_dropout(tiny_model_factory(), P)  # every dropout on: hidden and attention
    ours = _fast(copy.deepcopy(base))
    eager: Any = copy.deepcopy(base)  # a transformers model: `set_attn_implementation`
    eager.set_attn_implementation("eager")
    use_fast_dropout(eager)
    assert getattr(ours.config, "_attn_implementation", None) == ATTN_IMPLEMENTATION
    ours.train()
    eager.train()

    counter = _CountingDropout()
    monkeypatch.setattr(attention_module, "fast_dropout", counter)
    batch = tiny_batch()  # right padding of different lengths
    torch.manual_seed(11)
    out_ours = ours(**batch, labels=LABELS)
    assert len(counter.shapes) == 3, "each layer's attention probabilities went through fast_dropout"
    assert counter.shapes[0] == (3, 4, 7, 7)

    # Eager attention calls F.dropout on its probabilities: give it fast_dropout, so with the same seed
    # both models draw the same masks in the same order.
    def eager_dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        return fast_dropout(x, p, training)

    monkeypatch.setattr(torch.nn.functional, "dropout", eager_dropout)
    torch.manual_seed(11)
    out_eager = eager(**batch, labels=LABELS)
    monkeypatch.undo()

    torch.testing.assert_close(out_ours.logits, out_eager.logits, atol=1e-5, rtol=1e-5)
    # Without fast dropout (other seed), the output differs: the comparison above is not vacuous.
    torch.manual_seed(12)
    assert not torch.allclose(ours(**batch).logits, out_eager.logits, atol=1e-4)

    for param in [*ours.parameters(), *eager.parameters()]:
        param.requires_grad_(True)
    ours.zero_grad()
    torch.manual_seed(11)
    ours(**batch, labels=LABELS).loss.backward()
    monkeypatch.setattr(torch.nn.functional, "dropout", eager_dropout)
    torch.manual_seed(11)
    eager(**batch, labels=LABELS).loss.backward()
    monkeypatch.undo()
    theirs = _grads(eager)
    mine = _grads(ours)
    assert mine.keys() == theirs.keys()
    for name, grad in theirs.items():
        torch.testing.assert_close(mine[name], grad, atol=1e-5, rtol=1e-4, msg=name)


# --- with nothing dropped, the math path is sdpa ------------------------------------------------------


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
def test_math_path_without_drops_equals_sdpa(tiny_model_factory: Callable[..., nn.Module], prefix: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    base = _attention_dropout_only(tiny_model_factory(), P)
    if prefix:
        _with_prefix(base)
    use_autopeft_attention(base)
    sdpa = copy.deepcopy(base).eval()  # eval: dropout 0 -> transformers' sdpa function
    ours = _fast(copy.deepcopy(base)).train()  # train: dropout P -> the math path

    counter = _CountingDropout(replace=lambda x, p, training: x)  # keep every element
    monkeypatch.setattr(attention_module, "fast_dropout", counter)
    batch = tiny_batch()
    got = ours(**batch).logits
    assert len(counter.shapes) == 3
    if prefix:
        assert counter.shapes[0][-1] == 3 + 7, "probabilities over [prefix, keys]"
    with torch.no_grad():
        expected = sdpa(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    # In eval the math path is not taken at all: the same sdpa result.
    ours.eval()
    counter.shapes.clear()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, expected, atol=0, rtol=0)
    assert counter.shapes == []


def test_math_path_without_padding(tiny_model_factory: Callable[..., nn.Module],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No padding: transformers may pass no mask at all (causal through `is_causal`)."""
    base = _attention_dropout_only(tiny_model_factory(), P)
    use_autopeft_attention(base)
    sdpa = copy.deepcopy(base).eval()
    ours = _fast(copy.deepcopy(base)).train()
    monkeypatch.setattr(attention_module, "fast_dropout", _CountingDropout(replace=lambda x, p, training: x))
    ids = tiny_batch(batch=2, seq=6)["input_ids"][:1]
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids).logits, sdpa(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


# --- seeds --------------------------------------------------------------------------------------------


def test_same_seed_same_output_other_seed_other_output(tiny_model_factory: Callable[..., nn.Module]) -> None:
    model = _fast(_attention_dropout_only(tiny_model_factory(), P)).train()
    batch = tiny_batch()
    with torch.no_grad():
        outs = []
        for seed in (1, 1, 2):
            torch.manual_seed(seed)
            outs.append(model(**batch).logits)
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


# --- prefix + fast dropout ------------------------------------------------------------------------------


def test_prefix_and_fast_dropout_compose(tiny_model_factory: Callable[..., nn.Module],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    model = set_dropout(tiny_model_factory(), P)
    info = apply_plan(model, PeftPlan.from_selectors({"0-1": [{"method": "prefix", "length": 4}]}, num_layers=3))
    _fast(model).train()
    counter = _CountingDropout()
    monkeypatch.setattr(attention_module, "fast_dropout", counter)
    batch = tiny_batch()
    loss = model(**batch, labels=LABELS).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert [shape[-1] for shape in counter.shapes] == [4 + 7, 4 + 7, 7], "layer 2 has no prefix"
    prefixes = [m for m in model.modules() if isinstance(m, PrefixKV)]
    assert len(prefixes) == 2
    for prefix in prefixes:
        for param in prefix.parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == info.trainable_params
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
