"""Batching: seeded and resumable order, each example once per epoch, less padding, padded tensors."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch

from autopeft.errors import ConfigError
from autopeft.train.batching import (
    TrainBatches,
    collate,
    eval_batches,
    iter_eval_batches,
    iter_train_batches,
)
from autopeft.train.tasks import EncodedSplit


def skewed_lengths(n: int, seed: int = 0) -> list[int]:
    """Sentence-like lengths: mostly short, a long tail (as SST-2's are)."""
    return (np.random.default_rng(seed).lognormal(3.0, 0.6, n).astype(int) + 3).tolist()


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("group_by_length", [True, False])
@pytest.mark.parametrize(("n", "batch_size"), [(1000, 32), (97, 8), (5, 16), (64, 64)])
def test_every_example_once_per_epoch(n: int, batch_size: int, group_by_length: bool) -> None:
    order = TrainBatches(skewed_lengths(n), batch_size, seed=1, group_by_length=group_by_length)
    for epoch in range(3):
        batches = order.epoch_batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert len(batches) == order.steps_per_epoch
        assert sum(len(b) != batch_size for b in batches) == (1 if n % batch_size else 0)


def test_drop_last_keeps_only_full_batches() -> None:
    order = TrainBatches(skewed_lengths(97), 8, drop_last=True)
    batches = order.epoch_batches(0)
    assert order.steps_per_epoch == 12 == len(batches) and all(len(b) == 8 for b in batches)


def test_order_is_a_function_of_seed_and_epoch() -> None:
    lengths = skewed_lengths(500)
    order = TrainBatches(lengths, 16, seed=7)
    assert order.epoch_batches(2) == TrainBatches(list(lengths), 16, seed=7).epoch_batches(2)
    assert order.epoch_batches(0) != order.epoch_batches(1)
    assert order.epoch_batches(0) != TrainBatches(lengths, 16, seed=8).epoch_batches(0)


def test_longest_batch_first_and_less_padding_than_random() -> None:
    lengths = skewed_lengths(4000)
    grouped = TrainBatches(lengths, 32, seed=0).epoch_batches(0)
    assert max(lengths[i] for i in grouped[0]) == max(lengths)
    random = TrainBatches(lengths, 32, seed=0, group_by_length=False).epoch_batches(0)
    assert padded_tokens(grouped, lengths) < 0.2 * padded_tokens(random, lengths)


def test_early_steps_are_not_biased_to_long_examples() -> None:
    """Batches are shuffled after grouping. In HF's order the first 25 steps here average ~1.3x the
    mean length (each megabatch runs long to short); a low-fidelity rung would see mostly long text."""
    lengths = skewed_lengths(6400)
    early = [
        np.mean([lengths[i] for b in TrainBatches(lengths, 16, seed=seed).epoch_batches(0)[1:26] for i in b])
        for seed in range(20)
    ]
    assert np.mean(early) / np.mean(lengths) == pytest.approx(1.0, abs=0.08)


def test_resume_from_any_step_gives_the_uninterrupted_sequence() -> None:
    order = TrainBatches(skewed_lengths(100), 16, seed=3)  # 7 steps per epoch
    straight = list(islice(order.iter_from(0), 30))
    assert [order.batch(step) for step in range(30)] == straight
    fresh = TrainBatches(skewed_lengths(100), 16, seed=3)  # a new process, resuming from saved state
    for step in (0, 1, 6, 7, 13, 22):
        assert list(islice(fresh.iter_from(step), 30 - step)) == straight[step:]
        assert fresh.batch(step) == straight[step]
    epoch, offset = order.position(16)
    assert (epoch, offset) == (2, 2)
    assert list(order.iter_epoch(epoch, offset)) == straight[16:21]
    with pytest.raises(ConfigError, match=r"start_step 8 outside 0\.\.7"):
        list(order.iter_epoch(0, 8))


def split_of(lengths: list[int], *, pairs: bool = False, regression: bool = False) -> EncodedSplit:
    ids = [[100 + i] * n for i, n in enumerate(lengths)]
    labels: list[int | float] = [i * 0.5 if regression else i % 2 for i in range(len(lengths))]
    types = [[0] * (n - n // 2) + [1] * (n // 2) for n in lengths] if pairs else None
    return EncodedSplit(input_ids=ids, labels=labels, token_type_ids=types)


def test_collate_pads_right_to_the_longest_in_batch() -> None:
    split = split_of([3, 5, 2, 9])
    batch = collate(split, [0, 1, 2], pad_token_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[100] * 3 + [0] * 2, [101] * 5, [102] * 2 + [0] * 3]
    assert batch["attention_mask"].tolist() == [[1] * 3 + [0] * 2, [1] * 5, [1] * 2 + [0] * 3]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1, 0]

    batch = collate(split_of([2, 4], pairs=True, regression=True), [1, 0], pad_token_id=7)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [0.5, 0.0]
    assert batch["input_ids"][1].tolist() == [100, 100, 7, 7]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]


def test_train_batches_resume_as_tensors() -> None:
    split = split_of(skewed_lengths(50))
    order = TrainBatches(split.lengths, 8, seed=2)
    full = list(islice(iter_train_batches(split, order, 0), 12))
    again = TrainBatches(split.lengths, 8, seed=2)
    resumed = list(islice(iter_train_batches(split, again, 0, start_step=9), 3))
    for (ia, a), (ib, b) in zip(full[9:], resumed, strict=True):
        assert ia == ib and all(torch.equal(a[k], b[k]) for k in a)


def test_eval_batches_sorted_by_length_and_complete() -> None:
    lengths = skewed_lengths(45)
    split = split_of(lengths)
    assert [len(b) for b in eval_batches(lengths, 10)] == [10, 10, 10, 10, 5]
    batches = list(iter_eval_batches(split, 10, pad_token_id=0))
    assert sorted(i for indices, _ in batches for i in indices) == list(range(45))
    real = [n for _, b in batches for n in b["attention_mask"].sum(1).tolist()]
    assert real == sorted(lengths, reverse=True)
    for indices, batch in batches:
        assert batch["labels"].tolist() == [split.labels[i] for i in indices]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size 0"):
        TrainBatches([3, 4], 0)
    with pytest.raises(ConfigError, match="no training examples"):
        TrainBatches([], 4)
    with pytest.raises(ConfigError, match="must not be negative"):
        TrainBatches([3, 4], 1).batch(-1)
    with pytest.raises(ConfigError, match="empty batch"):
        collate(split_of([3]), [], pad_token_id=0)
