"""`fast_dropout`: the drop rate and scale it promises (p rounded to 1/65536), determinism under a torch
seed, its gradient, the fallbacks to `F.dropout`, and `use_fast_dropout` on a tiny BERT."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autopeft.peft.kernels import dropout as dropout_module
from autopeft.peft.kernels.dropout import FastDropout, fast_dropout, use_fast_dropout
from tests.conftest import set_dropout, tiny_batch, tiny_bert

N = 1_000_000
LEVELS = 65536


def _expected_scale(p: float) -> float:
    return LEVELS / (LEVELS - round(p * LEVELS))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_drop_rate_and_mean(p: float) -> None:
    torch.manual_seed(0)
    out = fast_dropout(torch.ones(N), p)
    dropped = out == 0
    assert abs(dropped.float().mean().item() - p) < 0.002
    # Each of the four 16-bit lanes of a 64-bit draw is unbiased on its own.
    for lane in dropped.view(-1, 4).float().mean(0).tolist():
        assert abs(lane - p) < 0.004
    tolerance = 6 * math.sqrt(p / (1 - p) / N)  # six standard deviations of the mean
    assert abs(out.double().mean().item() - 1.0) < tolerance


@pytest.mark.parametrize("p", [0.1, 0.25, 1 / 3, 0.999])
def test_p_is_rounded_to_a_65536th_and_kept_values_scaled_exactly(p: float) -> None:
    torch.manual_seed(0)
    out = fast_dropout(torch.ones(200_000, dtype=torch.float64), p)
    kept = out[out != 0]
    assert kept.numel() > 0
    assert torch.all(kept == _expected_scale(p))
    # The expectation is exact: keep probability (1 - round(p*2^16)/2^16) times the scale is 1.
    assert (1 - round(p * LEVELS) / LEVELS) * _expected_scale(p) == pytest.approx(1.0, abs=1e-15)


def test_p_below_half_a_level_is_no_dropout() -> None:
    x = torch.randn(1000)
    assert fast_dropout(x, 0.4 / LEVELS) is x
    out = fast_dropout(x, 1 / LEVELS)
    assert not torch.equal(out, x), "one level (1/65536) is already dropout"


def test_eval_and_zero_p_are_identity() -> None:
    x = torch.randn(5, 7)
    assert fast_dropout(x, 0.5, training=False) is x
    assert fast_dropout(x, 0.0) is x
    module = FastDropout(0.5).eval()
    assert module(x) is x


def test_same_seed_same_mask() -> None:
    x = torch.randn(33, 17)  # numel not a multiple of 4
    torch.manual_seed(7)
    a = fast_dropout(x, 0.3)
    torch.manual_seed(7)
    b = fast_dropout(x, 0.3)
    torch.manual_seed(8)
    c = fast_dropout(x, 0.3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("shape", [(1,), (2,), (3,), (5,), (2, 3, 5), (4, 1, 8, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shapes_and_dtypes(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape, dtype=torch.float32).add(0.5).to(dtype)
    out = fast_dropout(x, 0.5)
    assert out.shape == x.shape and out.dtype == dtype
    kept = out != 0
    torch.testing.assert_close(out[kept], (x * 2.0)[kept])


def test_non_contiguous_input() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 10).add(0.5).t()
    out = fast_dropout(x, 0.5)
    kept = out != 0
    assert out.shape == (10, 6)
    torch.testing.assert_close(out[kept], (x * 2.0)[kept])


def test_gradient_is_mask_times_scale() -> None:
    torch.manual_seed(0)
    p = 0.2
    x = torch.rand(64, 33).add(0.5).requires_grad_(True)  # no zeros: out == 0 means dropped
    out = fast_dropout(x, p)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    assert x.grad is not None
    keep = (out != 0).float()
    torch.testing.assert_close(x.grad, upstream * keep * _expected_scale(p), rtol=0, atol=0)
    torch.testing.assert_close(out.detach(), x.detach() * keep * _expected_scale(p), rtol=0, atol=0)


class _Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, x: torch.Tensor, p: float, training: bool = True, inplace: bool = False) -> torch.Tensor:
        self.calls.append((x.device.type, p, training))
        return torch.zeros_like(x)


def test_p_of_one_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(10)
    assert torch.equal(fast_dropout(x, 1.0), F.dropout(x, 1.0))
    spy = _Spy()
    monkeypatch.setattr(dropout_module.F, "dropout", spy)
    fast_dropout(x, 1.0)
    assert spy.calls == [("cpu", 1.0, True)]


def test_non_cpu_device_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy()
    monkeypatch.setattr(dropout_module.F, "dropout", spy)
    x = torch.empty(16, device="meta")  # any non-CPU device takes torch's own dropout
    fast_dropout(x, 0.1)
    assert spy.calls == [("meta", 0.1, True)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_torch_dropout() -> None:
    torch.manual_seed(0)
    x = torch.ones(N, device="cuda")
    torch.manual_seed(3)
    ours = fast_dropout(x, 0.1)
    torch.manual_seed(3)
    theirs = F.dropout(x, 0.1)
    assert torch.equal(ours, theirs)


def test_negative_p_is_rejected_like_torch() -> None:
    x = torch.ones(100)
    with pytest.raises(ValueError):
        F.dropout(x, -0.1)
    with pytest.raises(ValueError):
        fast_dropout(x, -0.1)


def test_p_above_one_is_rejected_like_torch() -> None:
    with pytest.raises(ValueError):
        fast_dropout(torch.ones(100), 1.5)  # through F.dropout


# --- use_fast_dropout on a model --------------------------------------------------------------------


def test_use_fast_dropout_replaces_every_dropout_and_keeps_p() -> None:
    torch.manual_seed(0)
    model = set_dropout(tiny_bert(), 0.1)
    embedding_dropout = model.get_submodule("bert.embeddings.dropout")
    assert isinstance(embedding_dropout, nn.Dropout)
    embedding_dropout.p = 0.25  # a distinct p to follow
    before = {name: m.p for name, m in model.named_modules() if type(m) is nn.Dropout}
    assert len(before) > 5
    batch = tiny_batch()
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits

    assert use_fast_dropout(model) == len(before)
    after = {name: m for name, m in model.named_modules() if isinstance(m, nn.Dropout)}
    assert after.keys() == before.keys()
    assert all(type(m) is FastDropout and m.p == before[name] for name, m in after.items())
    assert use_fast_dropout(model) == 0, "a second call finds nothing left to replace"

    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=0)  # eval: no dropout
        model.train()
        torch.manual_seed(1)
        first = model(**batch).logits
        torch.manual_seed(1)
        again = model(**batch).logits
        torch.manual_seed(2)
        other = model(**batch).logits
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_use_fast_dropout_keeps_the_module_mode() -> None:
    torch.manual_seed(0)
    model = set_dropout(tiny_bert(), 0.1).eval()
    batch = tiny_batch()
    with torch.no_grad():
        expected = model(**batch).logits
        use_fast_dropout(model)
        assert not any(m.training for m in model.modules())
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=0)
