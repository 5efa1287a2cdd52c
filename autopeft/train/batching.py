"""Batches for training and evaluation: length-grouped, seeded, resumable, padded per batch.

Training order follows Hugging Face Trainer's `group_by_length` (`get_length_grouped_indices` in
`transformers/trainer_pt_utils.py`): shuffle, cut into megabatches of `mega_batch_mult * batch_size`
(50, or fewer so there are at least 4), sort each megabatch by length, longest batch first so that
an out-of-memory error shows at step 0. One change: the batches are then shuffled (the longest
still first). In HF's order, batch lengths fall from long to short inside every megabatch, so a
trial's early steps (all a low-fidelity rung sees) are biased toward long examples; shuffling the
batches removes that at no cost in padding.

The order of epoch `e` is a pure function of (lengths, batch size, seed, e), so a trial resumed at
step k sees exactly the batches it would have seen without stopping.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from autopeft.errors import ConfigError
from autopeft.train.tasks.encode import EncodedSplit


def length_grouped_batches(
    lengths: Sequence[int] | np.ndarray[Any, Any],
    batch_size: int,
    rng: np.random.Generator,
    mega_batch_mult: int | None = None,
) -> list[list[int]]:
    """Batches of indices of similar length, in a shuffled order with the longest batch first."""
    lens = np.asarray(lengths)
    n = len(lens)
    if n == 0:
        return []
    if mega_batch_mult is None:
        mega_batch_mult = max(1, min(n // (batch_size * 4), 50))
    mega = mega_batch_mult * batch_size
    perm = rng.permutation(n)
    batches: list[list[int]] = []
    for start in range(0, n, mega):
        chunk = perm[start : start + mega]
        chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    batches = [batches[i] for i in order]
    longest = max(range(len(batches)), key=lambda b: lens[batches[b][0]])
    batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Plain shuffled batches (no length grouping)."""
    perm = rng.permutation(n)
    return [perm[i : i + batch_size].tolist() for i in range(0, n, batch_size)]


class TrainBatches:
    """The training batches of every epoch, reproducible from the seed; `batch(step)` for any step.

    `drop_last` drops the one batch smaller than `batch_size` (there is at most one per epoch).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        group_by_length: bool = True,
        drop_last: bool = False,
        mega_batch_mult: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size {batch_size} must be at least 1", field="batch_size")
        if not len(lengths):
            raise ConfigError("no training examples to batch", field="task")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed = batch_size, seed
        self.group_by_length, self.drop_last = group_by_length, drop_last
        self.mega_batch_mult = mega_batch_mult
        self._cached: tuple[int, list[list[int]]] | None = None  # the epoch last asked for

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last and n >= self.batch_size else -(-n // self.batch_size)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch`, in order; each index appears exactly once (unless dropped)."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch])
        if self.group_by_length:
            batches = length_grouped_batches(self.lengths, self.batch_size, rng, self.mega_batch_mult)
        else:
            batches = random_batches(len(self.lengths), self.batch_size, rng)
        if self.drop_last and len(batches) > self.steps_per_epoch:
            batches = [b for b in batches if len(b) == self.batch_size]
        self._cached = (epoch, batches)
        return batches

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within it) of global step `step` (counted from 0)."""
        if step < 0:
            raise ConfigError(f"step {step} must not be negative", field="step")
        return divmod(step, self.steps_per_epoch)

    def batch(self, step: int) -> list[int]:
        """Indices of the batch at global step `step`: what a trial resumed at `step` trains on next."""
        epoch, offset = self.position(step)
        return self.epoch_batches(epoch)[offset]

    def iter_epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[int]]:
        """Batches of `epoch` from its `start_step`-th on."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ConfigError(f"start_step {start_step} outside 0..{self.steps_per_epoch}", field="step")
        yield from self.epoch_batches(epoch)[start_step:]

    def iter_from(self, step: int = 0) -> Iterator[list[int]]:
        """Endless batches from global step `step` on, epoch after epoch."""
        epoch, offset = self.position(step)
        while True:
            yield from self.iter_epoch(epoch, offset)
            epoch, offset = epoch + 1, 0


def collate(split: EncodedSplit, indices: Sequence[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad the examples `indices` of `split` to the longest of them (right padding).

    Gives `input_ids`, `attention_mask`, `labels` (long for classification, float for regression:
    what `*ForSequenceClassification` reads as single-label vs regression), and `token_type_ids`
    when the tokenizer made them. `pad_token_id` is the tokenizer's (the model loader gives
    GPT-2 and Llama tokenizers their end-of-sequence token as pad).
    """
    if not indices:
        raise ConfigError("cannot collate an empty batch", field="batch_size")
    width = max(len(split.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    token_types = split.token_type_ids
    types = torch.zeros_like(ids) if token_types is not None else None
    for row, i in enumerate(indices):
        seq = split.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        if types is not None and token_types is not None:
            types[row, : len(seq)] = torch.tensor(token_types[i], dtype=torch.long)
    label_dtype = torch.float32 if split.regression else torch.long
    labels = torch.tensor([split.labels[i] for i in indices], dtype=label_dtype)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def iter_train_batches(
    split: EncodedSplit, batches: TrainBatches, pad_token_id: int, start_step: int = 0
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Endless (indices, padded batch) from global step `start_step` on (resume: the saved step)."""
    for indices in batches.iter_from(start_step):
        yield indices, collate(split, indices, pad_token_id)


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches sorted by length, longest first: least padding; the metrics do not depend on order."""
    if batch_size < 1:
        raise ConfigError(f"batch_size {batch_size} must be at least 1", field="eval_batch_size")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def iter_eval_batches(
    split: EncodedSplit, batch_size: int, pad_token_id: int
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices, padded batch) for evaluation; indices put predictions back in split order."""
    for indices in eval_batches(split.lengths, batch_size):
        yield indices, collate(split, indices, pad_token_id)
