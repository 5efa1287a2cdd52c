"""`files` tasks: your own CSV / TSV / JSONL files, with the text and label columns named in the recipe
(or, for a CSV / TSV file without a header line, `header: false` and 0-based column indices)."""

from __future__ import annotations

from pathlib import Path

from autopeft.errors import ConfigError, DataError
from autopeft.train.tasks.spec import TaskSpec
from autopeft.train.tasks.tables import discover_labels, read_columns, to_examples
from autopeft.train.tasks.types import Splits


def resolve(path: Path, base_dir: Path) -> Path:
    """Relative paths in a recipe are relative to the recipe's folder."""
    return path if path.is_absolute() else base_dir / path


def load_files(spec: TaskSpec, base_dir: Path) -> Splits:
    """Train (and dev, when given) of a `files` task; labels from the spec, else those in train, sorted."""
    if spec.train is None or spec.text_columns is None or spec.label_column is None:
        raise ConfigError("task 'files' needs train, text_columns and label_column", field="task")
    columns = (*spec.text_columns, spec.label_column)
    train_path = resolve(spec.train, base_dir)
    train_rows = read_columns(train_path, columns, has_header=spec.header)
    labels: tuple[str, ...] | None = None
    if not spec.regression:
        labels = spec.labels if spec.labels is not None else discover_labels(train_rows)
        if len(labels) < 2:
            raise DataError(
                f"{train_path}: column {spec.label_column!r} has {len(labels)} distinct label(s) "
                f"({', '.join(labels)}); a classification task needs at least 2"
            )
    train = to_examples(train_rows, train_path, columns, labels)
    dev = []
    if spec.dev is not None:
        dev_path = resolve(spec.dev, base_dir)
        dev = to_examples(read_columns(dev_path, columns, has_header=spec.header), dev_path, columns, labels)
    return Splits(train=train, dev=dev, label_names=labels or ())
