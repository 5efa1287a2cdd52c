"""`load_task`: read a task's source, cut the seeded validation slice off train, apply the cap.

The validation slice is a fixed function of (train size, `validation_size`, `seed`): the same
examples whatever `max_train_examples` is, so trials at every fidelity are scored on one set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopeft.errors import ConfigError, DataError
from autopeft.train.tasks.demo import DEMO_FORMAT, load_demo
from autopeft.train.tasks.files import load_files
from autopeft.train.tasks.glue import GLUE_FORMATS, GlueFormat, load_glue
from autopeft.train.tasks.hf import load_hf
from autopeft.train.tasks.spec import Column, TaskSpec
from autopeft.train.tasks.types import Example, Splits, TaskData


def load_task(spec: TaskSpec, base_dir: str | Path | None = None) -> TaskData:
    """Load the task `spec` names; relative paths in it resolve against `base_dir` (default: cwd)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    splits = _read(spec, base)
    metric = spec.metric or _default_metric(spec)
    if metric == "f1" and len(splits.label_names) != 2:
        raise DataError(
            f"task {spec.name}: metric f1 is binary but there are {len(splits.label_names)} labels "
            f"({', '.join(splits.label_names)}); use f1_macro"
        )
    validation, train = split_validation(splits.train, spec.validation_size, spec.seed)
    if spec.max_train_examples is not None:
        train = train[: spec.max_train_examples]
    return TaskData(
        name=_display_name(spec),
        train=train,
        validation=validation,
        dev=splits.dev,
        metric=metric,
        regression=spec.is_regression,
        label_names=splits.label_names,
    )


def _read(spec: TaskSpec, base: Path) -> Splits:
    if spec.name == "demo":
        return load_demo()
    if spec.name == "files":
        return load_files(spec, base)
    if spec.name == "hf":
        return load_hf(spec)
    return load_glue(spec.name, spec.glue_dir(base) / spec.name)


def _display_name(spec: TaskSpec) -> str:
    if spec.name == "files" and spec.train is not None:
        return spec.train.stem
    if spec.name == "hf" and spec.dataset is not None:
        return spec.dataset + (f"/{spec.config}" if spec.config else "")
    return spec.name


def _default_metric(spec: TaskSpec) -> str:
    if spec.name in GLUE_FORMATS:
        return GLUE_FORMATS[spec.name].metric
    return "pearson_spearman" if spec.is_regression else "accuracy"


@dataclass(frozen=True)
class FileColumns:
    """Where a task's data files hold the texts and the label: what reading another file of the task needs."""

    text_columns: tuple[Column, ...]
    label_column: Column
    has_header: bool = True
    names: tuple[str, ...] | None = None  # column names of a GLUE file without a header line (CoLA)


def file_columns(spec: TaskSpec) -> FileColumns:
    """The columns of the task's own files: the recipe's for `files` and `hf`, the GLUE format's otherwise."""
    fmt = _file_format(spec)
    if fmt is not None:
        return FileColumns(fmt.text_columns, fmt.label_column, names=fmt.header)
    if spec.text_columns is None or spec.label_column is None:
        raise ConfigError(f"task {spec.name!r} needs text_columns and label_column", field="task")
    return FileColumns(tuple(spec.text_columns), spec.label_column, has_header=spec.header)


def _file_format(spec: TaskSpec) -> GlueFormat | None:
    """The fixed file format of a GLUE task or the demo (None for `files` and `hf`: the recipe says)."""
    return DEMO_FORMAT if spec.name == "demo" else GLUE_FORMATS.get(spec.name)


def label_keys(spec: TaskSpec, task: TaskData) -> dict[str, int] | None:
    """Label value -> class index, as the task's files spell labels (GLUE `0`/`1`, a `files` task's values)
    and as its label names (`positive`); None for a regression task."""
    if task.regression:
        return None
    fmt = _file_format(spec)
    values = fmt.label_values if fmt is not None and fmt.label_values else (spec.labels or task.label_names)
    keys = {value: i for i, value in enumerate(values)}
    for i, name in enumerate(task.label_names):
        keys.setdefault(name, i)
    if spec.name == "hf":  # a ClassLabel column holds class indices
        for i in range(len(task.label_names)):
            keys.setdefault(str(i), i)
    return keys


def split_validation(
    examples: list[Example], size: int | float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(validation, rest): a seeded random slice of `size` examples (a count, or a share of them).

    Both keep the file order; the rest is what training sees.
    """
    n = len(examples)
    count = size if isinstance(size, int) else max(1, round(size * n))
    if count >= n:
        raise DataError(
            f"validation_size {size} leaves no training examples out of {n}; accepted: a count below {n} "
            "or a share in (0, 1)"
        )
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(n)[:count]] = True
    validation = [ex for ex, keep in zip(examples, chosen, strict=True) if keep]
    rest = [ex for ex, keep in zip(examples, chosen, strict=True) if not keep]
    return validation, rest
