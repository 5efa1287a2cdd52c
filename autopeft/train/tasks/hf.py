"""`hf` tasks: a Hugging Face dataset, loaded with `datasets.load_dataset` (the optional `hf` extra).

`datasets` is imported here, when such a task is loaded, never at import time. Rows go through the
same column and label checks as files; a `ClassLabel` column keeps the dataset's own label names.
"""

from __future__ import annotations

from typing import Any

from autopeft.errors import ConfigError, DataError
from autopeft.train.tasks.spec import TaskSpec
from autopeft.train.tasks.tables import Row, discover_labels, to_examples
from autopeft.train.tasks.types import Example, Splits


def _load_dataset() -> Any:
    try:
        from datasets import load_dataset
    except ImportError:
        raise ConfigError(
            "task 'hf' needs the `datasets` package: pip install 'autopeft[hf]'", field="task.name"
        ) from None
    return load_dataset


def load_hf(spec: TaskSpec) -> Splits:
    """Train and dev splits of `spec.dataset`; label names from a ClassLabel column, else discovered."""
    if spec.dataset is None or spec.text_columns is None or spec.label_column is None:
        raise ConfigError("task 'hf' needs dataset, text_columns and label_column", field="task")
    load_dataset = _load_dataset()
    columns = (*spec.text_columns, spec.label_column)
    source = f"{spec.dataset}" + (f"/{spec.config}" if spec.config else "")

    def rows(split: str) -> tuple[Any, list[Row]]:
        try:
            data = load_dataset(spec.dataset, spec.config, split=split)
        except Exception as err:  # the datasets library raises many types; one line for the user
            raise DataError(f"{source}[{split}]: cannot load ({type(err).__name__}: {err})") from err
        missing = [c for c in columns if c not in data.column_names]
        if missing:
            available = ", ".join(data.column_names)
            raise DataError(f"{source}[{split}]: no column {missing[0]!r}; columns: {available}")
        table = data.select_columns(list(columns))
        return data, [(i, [item[c] for c in columns]) for i, item in enumerate(table)]

    data, train_rows = rows(spec.train_split)
    labels: tuple[str, ...] | None = None
    label_names: tuple[str, ...] = ()
    if not spec.regression:
        names = getattr(data.features[spec.label_column], "names", None)
        if spec.labels is not None:
            labels = label_names = spec.labels
        elif names:  # ClassLabel: rows hold class indices, which become their own keys
            labels, label_names = tuple(str(i) for i in range(len(names))), tuple(names)
        else:
            labels = label_names = discover_labels(train_rows)
    train = to_examples(train_rows, f"{source}[{spec.train_split}]", columns, labels)
    dev: list[Example] = []
    if spec.dev_split is not None:
        _, dev_rows = rows(spec.dev_split)
        dev = to_examples(dev_rows, f"{source}[{spec.dev_split}]", columns, labels)
    return Splits(train=train, dev=dev, label_names=label_names)
