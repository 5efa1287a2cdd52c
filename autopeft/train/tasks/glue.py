"""GLUE tasks in their original distribution files (`<data_dir>/<task>/train.tsv`, `dev.tsv`).

Each format is a row of a table: which columns hold the texts and the label, how labels map to
class indices (the order of the Hugging Face `glue` dataset, so indices agree with models trained
there), and the GLUE metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autopeft.train.tasks.tables import read_columns, to_examples
from autopeft.train.tasks.types import Example, Splits


@dataclass(frozen=True)
class GlueFormat:
    text_columns: tuple[str, ...]
    label_column: str
    metric: str
    label_values: tuple[str, ...] | None = None  # raw values in class order; None: a float score
    label_names: tuple[str, ...] = ()
    header: tuple[str, ...] | None = None  # column names of a file without a header line


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
GLUE_FORMATS: dict[str, GlueFormat] = {
    "sst2": GlueFormat(("sentence",), "label", "accuracy", _BINARY, ("negative", "positive")),
    "mrpc": GlueFormat(
        ("#1 String", "#2 String"), "Quality", "f1", _BINARY, ("not_equivalent", "equivalent")
    ),
    "cola": GlueFormat(
        ("sentence",), "label", "matthews", _BINARY, ("unacceptable", "acceptable"),
        header=("source", "label", "original-label", "sentence"),
    ),
    "rte": GlueFormat(("sentence1", "sentence2"), "label", "accuracy", _ENTAILMENT, _ENTAILMENT),
    "qnli": GlueFormat(("question", "sentence"), "label", "accuracy", _ENTAILMENT, _ENTAILMENT),
    "stsb": GlueFormat(("sentence1", "sentence2"), "score", "pearson_spearman"),
}


def read_glue_file(path: Path, fmt: GlueFormat) -> list[Example]:
    columns = (*fmt.text_columns, fmt.label_column)
    return to_examples(read_columns(path, columns, header=fmt.header), path, columns, fmt.label_values)


def load_glue(name: str, task_dir: Path) -> Splits:
    """Train and dev of GLUE task `name` from `task_dir` (the folder holding train.tsv and dev.tsv)."""
    fmt = GLUE_FORMATS[name]
    train = read_glue_file(task_dir / "train.tsv", fmt)
    dev = read_glue_file(task_dir / "dev.tsv", fmt)
    return Splits(train=train, dev=dev, label_names=fmt.label_names)
