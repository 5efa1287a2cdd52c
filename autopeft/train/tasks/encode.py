"""Tokenisation of a split: token ids per example, truncated to `max_length`, not padded.

Padding is left to the batcher, which pads each batch to its own longest example only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autopeft.errors import DataError
from autopeft.train.tasks.types import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids and labels of one split, in the split's order.

    `token_type_ids` is kept when the tokenizer produces it (BERT-style pair segments), else None.
    """

    input_ids: list[list[int]]
    labels: list[int | float]
    token_type_ids: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def regression(self) -> bool:
        """Float labels are scores (the loaders give classification labels as int indices)."""
        return bool(self.labels) and isinstance(self.labels[0], float)


def encode(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, max_length: int) -> EncodedSplit:
    """Tokenise texts (or text pairs) with truncation to `max_length` tokens, special tokens included."""
    if not examples:
        return EncodedSplit(input_ids=[], labels=[])
    paired = [ex.text_pair is not None for ex in examples]
    if any(paired) and not all(paired):
        raise DataError("a split mixes single texts and text pairs")
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair or "" for ex in examples] if paired[0] else None
    out = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    labels = [ex.label for ex in examples]
    token_types = out.get("token_type_ids")
    return EncodedSplit(
        input_ids=[list(ids) for ids in out["input_ids"]],
        labels=labels,
        token_type_ids=[list(t) for t in token_types] if token_types is not None else None,
    )
