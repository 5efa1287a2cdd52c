"""Examples and loaded task data: plain dataclasses, so the study loop never needs torch to hold them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled example: a text or a text pair; `label` is a class index, or a float for regression."""

    text: str
    label: int | float
    text_pair: str | None = None


@dataclass(frozen=True)
class TaskData:
    """A task's three splits.

    `validation` is the seeded slice of train that the search scores trials on (held out of `train`);
    `dev` is the task's own dev split, kept for the final report (empty when the task has none).
    """

    name: str
    train: list[Example]
    validation: list[Example]
    dev: list[Example]
    metric: str
    regression: bool = False
    label_names: tuple[str, ...] = field(default=())

    @property
    def chance(self) -> float:
        """The validation score of always predicting the most common training label (`metrics.chance_score`)."""
        from autopeft.train.metrics import chance_score

        return chance_score(self.metric, [e.label for e in self.train], [e.label for e in self.validation])

    @property
    def num_labels(self) -> int:
        """Output size of the classification head: 1 for regression."""
        return 1 if self.regression else len(self.label_names)


@dataclass(frozen=True)
class Splits:
    """What a task source reads: train and dev examples and the label names (empty for regression)."""

    train: list[Example]
    dev: list[Example]
    label_names: tuple[str, ...]
