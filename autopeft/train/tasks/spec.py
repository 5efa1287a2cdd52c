"""`TaskSpec`: the `task:` section of a trial recipe.

`name` picks the source: a GLUE task read from `data_dir` in its original format, the packaged
`demo` task, `files` (your CSV/TSV/JSONL files, columns by name, or by 0-based index with `header: false`)
or `hf` (a Hugging Face dataset). Validation is done here, before any file is opened, so a bad recipe
fails at load time, and every message reads as one line (no pydantic union branches).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autopeft.train.metrics import METRIC_NAMES, REGRESSION_METRICS, MetricName

GlueName = Literal["sst2", "mrpc", "cola", "rte", "qnli", "stsb"]
GLUE_NAMES: tuple[str, ...] = ("sst2", "mrpc", "cola", "rte", "qnli", "stsb")
TaskName = Literal["sst2", "mrpc", "cola", "rte", "qnli", "stsb", "demo", "files", "hf"]

_FILE_FIELDS = ("train", "dev")
_HF_FIELDS = ("dataset", "config")
_COLUMN_FIELDS = ("text_columns", "label_column", "labels")

#: A column: its name in the header line (or JSONL key), or its 0-based index in a file without a header.
Column = str | int


class TaskSpec(BaseModel):
    """Which task a trial trains on and how its search-time validation slice is cut."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TaskName = Field(description="A GLUE task, `demo`, `files` or `hf`.")
    data_dir: Path | None = Field(
        default=None,
        description="GLUE tasks: folder holding `<task>/train.tsv` and `dev.tsv`. Default: "
        "$AUTOPEFT_DATA_DIR, else `../shared/data/glue` from the working directory.",
    )
    train: Path | None = Field(default=None, description="`files`: training file (.csv, .tsv or .jsonl).")
    dev: Path | None = Field(default=None, description="`files`: optional dev file for the final report.")
    dataset: str | None = Field(default=None, description="`hf`: dataset id for `datasets.load_dataset`.")
    config: str | None = Field(default=None, description="`hf`: dataset configuration name.")
    train_split: str = Field(default="train", description="`hf`: split used for training.")
    dev_split: str | None = Field(default="validation", description="`hf`: split kept for the report.")
    text_columns: tuple[Column] | tuple[Column, Column] | None = Field(
        default=None, description="`files`/`hf`: one text column, or two for a text pair."
    )
    label_column: Column | None = Field(default=None, description="`files`/`hf`: the label (or score) column.")
    header: bool = Field(
        default=True, description="`files` (CSV/TSV): false for a file without a header line; then columns "
        "are 0-based indices (`text_columns: [1]`, `label_column: 0`)."
    )
    labels: tuple[str, ...] | None = Field(
        default=None, description="Label values in class-index order; default: those in train, sorted."
    )
    regression: bool = Field(default=False, description="`files`/`hf`: the label is a real-valued score.")
    metric: MetricName | None = Field(
        default=None, description="Default: the task's GLUE metric; accuracy (or pearson_spearman) for files."
    )
    max_length: int = Field(default=128, gt=0, description="Tokens per example after truncation.")
    validation_size: int | float = Field(
        default=0.1,
        description="Search validation slice of train: a share in (0, 1) or a count of examples.",
    )
    seed: int = Field(default=0, description="Seed of the validation slice (not of training).")
    max_train_examples: int | None = Field(
        default=None, gt=0, description="Keep the first N training examples after the slice is removed."
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: object) -> object:
        """YAML `labels: [0, 1]` gives integers; labels are matched as text, as they are read from files."""
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value)
        return value

    @field_validator("text_columns", mode="before")
    @classmethod
    def _text_columns(cls, value: object) -> object:
        """One or two columns; a single name or index may be given bare. Checked here, so an error is one line."""
        if value is None:
            return None
        columns = list(value) if isinstance(value, list | tuple) else [value]
        if not 1 <= len(columns) <= 2:
            raise ValueError(f"takes one text column, or two for a text pair; got {len(columns)}")
        return tuple(_column(c) for c in columns)

    @field_validator("label_column", mode="before")
    @classmethod
    def _label_column(cls, value: object) -> object:
        return None if value is None else _column(value)

    @model_validator(mode="after")
    def _fits_source(self) -> TaskSpec:
        given = {k for k in (*_FILE_FIELDS, *_HF_FIELDS, *_COLUMN_FIELDS) if getattr(self, k) is not None}
        allowed: set[str] = set()
        required: tuple[str, ...] = ()
        if self.name == "files":
            allowed, required = {*_FILE_FIELDS, *_COLUMN_FIELDS}, ("train", "text_columns", "label_column")
        elif self.name == "hf":
            allowed, required = {*_HF_FIELDS, *_COLUMN_FIELDS}, ("dataset", "text_columns", "label_column")
        missing = [k for k in required if getattr(self, k) is None]
        if missing:
            raise ValueError(f"task {self.name!r} needs {', '.join(missing)}")
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{', '.join(extra)} not used by task {self.name!r} (only by files/hf)")
        self._check_columns()
        if self.regression and self.name not in ("files", "hf", "stsb"):
            raise ValueError(f"regression is fixed by the task for {self.name!r}; set it only for files/hf")
        if self.regression and self.labels is not None:
            raise ValueError("labels is for classification; a regression task has none")
        if self.metric is not None and (self.metric in REGRESSION_METRICS) != self.is_regression:
            kind = "regression" if self.is_regression else "classification"
            accepted = [m for m in METRIC_NAMES if (m in REGRESSION_METRICS) == self.is_regression]
            raise ValueError(
                f"metric {self.metric!r} does not fit a {kind} task; accepted: {', '.join(accepted)}"
            )
        size = self.validation_size
        if isinstance(size, float) and not 0 < size < 1:
            raise ValueError(f"validation_size {size} must be a share in (0, 1) or a count >= 1")
        if isinstance(size, int) and size < 1:
            raise ValueError(f"validation_size {size} must be a share in (0, 1) or a count >= 1")
        return self

    def _check_columns(self) -> None:
        """Names with a header line (and for `hf`), 0-based indices without one (CSV/TSV only)."""
        columns = [*(self.text_columns or ()), *([] if self.label_column is None else [self.label_column])]
        indices = [c for c in columns if isinstance(c, int)]
        if not self.header:
            if self.name != "files":
                raise ValueError(f"header: false is for files tasks, not {self.name!r}")
            jsonl = [str(p) for p in (self.train, self.dev) if p is not None and p.suffix.lower() == ".jsonl"]
            if jsonl:
                raise ValueError(f"header: false is for CSV/TSV files; {jsonl[0]} is JSONL (its keys name columns)")
            names = [c for c in columns if isinstance(c, str)]
            if names:
                raise ValueError(f"with header: false, columns are 0-based indices (text_columns: [1], "
                                 f"label_column: 0), not names such as {names[0]!r}")
        elif indices:
            raise ValueError(f"column {indices[0]} is an index: set header: false for a file without a header "
                             "line, or name the column")

    @property
    def is_regression(self) -> bool:
        return self.regression or self.name == "stsb"

    def glue_dir(self, base_dir: Path) -> Path:
        """Folder holding the GLUE task folders: `data_dir`, $AUTOPEFT_DATA_DIR, or ../shared/data/glue."""
        if self.data_dir is not None:
            return self.data_dir if self.data_dir.is_absolute() else base_dir / self.data_dir
        env = os.environ.get("AUTOPEFT_DATA_DIR")
        return Path(env) if env else Path.cwd() / "../shared/data/glue"


def _column(value: object) -> Column:
    """A column name (non-empty text) or a 0-based index (an integer >= 0, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a column; accepted: a name, or a 0-based index with header: false")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"column {value} is negative; indices start at 0")
    if isinstance(value, str) and not value.strip():
        raise ValueError("a column name is empty")
    return value
