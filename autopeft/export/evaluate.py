"""`autopeft evaluate` and `autopeft predict`: a trained adapter scored on, or run over, another data file.

What `autopeft train` wrote (`metrics.json` and the adapter, in `peft` format or our own) is loaded into
the same `TrainingSession` that trained it, built from the `autopeft.yaml` beside it, and the file is
read by the task reader with the task's columns (or `--columns`) and label values. The logits come from
the session's own evaluation loop, so the dev file scores exactly what `train` reported.

Also accepted: an `export` folder whose `peft/` holds weights (the search's trained trial), and a `peft`
folder inside either. `demo:dev` (and `demo:train`) names the packaged demo task's files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import ConfigError, DataError
from autopeft.export.bundle import BUNDLE_FILE, Bundle, read_bundle
from autopeft.export.final import METRICS_FILE, OWN_ADAPTER_FILE, PEFT_DIR, TRAINED_DIR
from autopeft.train.tasks.loader import FileColumns, file_columns, label_keys
from autopeft.train.tasks.tables import Row, read_columns, to_examples
from autopeft.train.tasks.types import Example

if TYPE_CHECKING:
    import torch

    from autopeft.train.session import TrainingSession

PEFT_WEIGHTS = "adapter_model.safetensors"
PACKAGED_PREFIX = "demo:"
_SPLIT = "data"  # the name the evaluated file gets among the session's splits


@dataclass(frozen=True)
class Trained:
    """A trained adapter on disk: its weights, their format, and the `autopeft.yaml` it was trained from."""

    folder: Path
    weights: Path
    adapter_format: str  # "autopeft" or "peft"
    bundle_path: Path


def find_trained(folder: str | Path) -> Trained:
    """The adapter in `folder` (a `train` output, an `export` folder with weights, or a `peft/` in either)
    and the nearest `autopeft.yaml` (in it, or one or two folders up: `best/autopeft.yaml` beside
    `best/trained/`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("not a folder" if folder.exists() else "no such folder", source=str(folder))
    candidates = [(folder / OWN_ADAPTER_FILE, "autopeft"), (folder / PEFT_DIR / PEFT_WEIGHTS, "peft"),
                  (folder / PEFT_WEIGHTS, "peft")]
    found = next(((path, kind) for path, kind in candidates if path.is_file()), None)
    if found is None:
        hint = f" (did you mean {folder / TRAINED_DIR}?)" if (folder / TRAINED_DIR / METRICS_FILE).is_file() else ""
        raise ConfigError(f"no trained adapter ({OWN_ADAPTER_FILE}, {PEFT_DIR}/{PEFT_WEIGHTS} or {PEFT_WEIGHTS}); "
                          f"pass the folder `autopeft train` wrote{hint}", source=str(folder))
    resolved = folder.resolve()
    bundles = [d / BUNDLE_FILE for d in (resolved, resolved.parent, resolved.parent.parent)]
    bundle = next((b for b in bundles if b.is_file()), None)
    if bundle is None:
        raise ConfigError(f"no {BUNDLE_FILE} in it or the two folders above; put the {BUNDLE_FILE} it was trained "
                          "from beside it", source=str(folder))
    return Trained(folder, found[0], found[1], bundle)


def data_path(data: str) -> Path:
    """`--data`: a file, or `demo:SPLIT` for the packaged demo task's `demo_SPLIT.tsv`."""
    if not data.startswith(PACKAGED_PREFIX):
        path = Path(data).expanduser()
        if not path.is_file():
            raise ConfigError("not a file" if path.exists() else "file not found", source=str(path), field="--data")
        return path
    folder = files("autopeft.train.tasks").joinpath("data")
    split = data.removeprefix(PACKAGED_PREFIX)
    packaged = folder.joinpath(f"demo_{split}.tsv")
    if not split or not packaged.is_file():
        known = sorted(f"demo:{p.name.removeprefix('demo_').removesuffix('.tsv')}" for p in folder.iterdir()
                       if p.name.startswith("demo_") and p.name.endswith(".tsv"))
        raise ConfigError(f"no packaged file {data!r}; accepted: {', '.join(known)}", field="--data")
    return Path(str(packaged))


def parse_columns(text: str | None, task: FileColumns) -> tuple[FileColumns, bool]:
    """`--columns text[,pair][,label]` over the task's columns; (columns, whether a label column is named).

    Names mean a file with a header line; 0-based indices (all digits) a file without one. The model
    reads as many texts as it was trained on, so one more column than that is the label.
    """
    if text is None:
        return task, True
    items = [c.strip() for c in text.split(",")]
    texts = len(task.text_columns)
    if any(not c for c in items) or len(items) not in (texts, texts + 1):
        raise ConfigError(f"{text!r}: the model reads {texts} text column(s); give {texts} name(s) or indices "
                          f"(predict), or {texts + 1} with the label last", field="--columns")
    digits = [c.isdigit() for c in items]
    if any(digits) and not all(digits):
        raise ConfigError(f"{text!r}: give all names (a file with a header line) or all 0-based indices (a file "
                          "without one)", field="--columns")
    columns: list[str | int] = [int(c) for c in items] if all(digits) else list(items)
    labelled = len(items) == texts + 1
    label = columns[-1] if labelled else task.label_column
    return FileColumns(tuple(columns[:texts]), label, has_header=not all(digits)), labelled


@dataclass(frozen=True)
class Request:
    """An `evaluate` or `predict` call with every cheap check done: the adapter, the bundle and the file's rows
    (read before any model loads, so a bad column or file fails at once)."""

    trained: Trained
    bundle: Bundle
    data: Path
    columns: tuple[str | int, ...]  # the texts, then the label when `labelled`
    labelled: bool
    rows: list[Row]


def prepare(folder: str | Path, data: str, columns: str | None, *, need_labels: bool) -> Request:
    trained = find_trained(folder)
    bundle = read_bundle(trained.bundle_path)
    path = data_path(data)
    chosen, labelled = parse_columns(columns, file_columns(bundle.recipe.task))
    if need_labels and not labelled:
        raise ConfigError(f"{columns!r} names no label column; evaluate needs one (last)", field="--columns")
    labelled = labelled and need_labels
    wanted = (*chosen.text_columns, chosen.label_column) if labelled else chosen.text_columns
    rows = read_columns(path, wanted, header=chosen.names, has_header=chosen.has_header)
    return Request(trained, bundle, path, wanted, labelled, rows)


@dataclass
class Scorer:
    """A trained adapter loaded into the session that trained it (the same model, plan and eval loop)."""

    request: Request
    session: TrainingSession
    label_keys: dict[str, int] | None = field(default=None)

    @classmethod
    def load(cls, request: Request) -> Scorer:
        from autopeft.train.session import TrainingSession

        bundle = request.bundle
        session = TrainingSession(bundle.recipe, bundle.config, config_source=str(request.trained.bundle_path))
        _load_weights(session, bundle, request.trained)
        return cls(request, session, label_keys(bundle.recipe.task, session.task))

    @property
    def label_values(self) -> list[str]:
        """One label per class, as the task's files spell it (the first key of each class index)."""
        names: dict[int, str] = {}
        for key, index in (self.label_keys or {}).items():
            names.setdefault(index, key)
        return [names[i] for i in range(len(names))]

    def examples(self) -> list[Example]:
        """The file's examples; without a label column every label is 0 (unused)."""
        request = self.request
        if request.labelled:
            return to_examples(request.rows, request.data, request.columns, self.label_keys)
        for line, values in request.rows:
            for name, text in zip(request.columns, values, strict=True):
                if not isinstance(text, str):
                    raise DataError(f"{request.data}:{line}: column {name!r} is {text!r}, expected text")
        return [Example(text=values[0], label=0, text_pair=values[1] if len(values) > 1 else None)
                for _, values in request.rows]

    def logits(self, examples: Sequence[Example]) -> torch.Tensor:
        from autopeft.train.tasks import encode

        session = self.session
        session.splits[_SPLIT] = encode(examples, session.tokenizer, self.request.bundle.recipe.task.max_length)
        return session.logits(_SPLIT)


def _load_weights(session: TrainingSession, bundle: Bundle, trained: Trained) -> None:
    """The saved adapter (and head) into the session's model, checked against the plan it was trained with."""
    from safetensors.torch import load_file

    from autopeft.export.peft_weights import load_peft_weights
    from autopeft.export.unwrap import plain_layers
    from autopeft.peft.roles import role_map_from_dict
    from autopeft.train.state import restore_trainable, trainable_state

    role_map = bundle.recipe.model.role_map
    arch = role_map_from_dict(role_map) if role_map else None
    tensors = load_file(str(trained.weights))
    with plain_layers(session.model, arch) as model:  # the names the adapter was saved under
        if trained.adapter_format == "peft":
            try:
                load_peft_weights(model, tensors)
            except ConfigError as err:
                raise ConfigError(f"{err}; not trained from {trained.bundle_path}?", source=str(trained.weights)) \
                    from None
            return
        expected = {k: v.shape for k, v in trainable_state(model).items()}
        odd = sorted(tensors.keys() ^ expected.keys()) or [k for k in expected if tensors[k].shape != expected[k]]
        if odd:
            raise ConfigError(f"does not fit the plan in {trained.bundle_path} (e.g. {odd[0]!r})",
                              source=str(trained.weights))
        restore_trainable(model, tensors)


@dataclass(frozen=True)
class Evaluation:
    """A file's score: the task's metric (`score`, its primary value) and its companions."""

    adapter: Path
    data: Path
    examples: int
    metric: str
    score: float
    metrics: dict[str, float]
    trained_dev_score: float | None = None  # what `train` reported on the task's dev split, for comparison

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": str(self.adapter), "data": str(self.data), "examples": self.examples,
                "metric": self.metric, "score": self.score, "metrics": self.metrics,
                "trained_dev_score": self.trained_dev_score}


def evaluate_file(folder: str | Path, data: str, *, columns: str | None = None) -> Evaluation:
    """Score the adapter in `folder` on the labelled file `data` with the task's metric."""
    from autopeft.train.metrics import compute_metric

    request = prepare(folder, data, columns, need_labels=True)
    scorer = Scorer.load(request)
    examples = scorer.examples()
    logits = scorer.logits(examples)
    task = scorer.session.task
    predictions = logits[:, 0].tolist() if task.regression else logits.argmax(-1).tolist()
    values = compute_metric(task.metric, predictions, [ex.label for ex in examples])
    primary = values.pop("primary")
    return Evaluation(Path(folder), request.data, len(examples), task.metric, primary, values,
                      _trained_dev_score(request.trained.folder))


def _trained_dev_score(folder: Path) -> float | None:
    try:
        score = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8")).get("dev_score")
    except (OSError, ValueError, AttributeError):
        return None
    return float(score) if isinstance(score, int | float) else None


@dataclass(frozen=True)
class Predictions:
    """One row per example of the file, in its order: the predicted label (or score) and the probabilities."""

    data: Path
    header: list[str]
    rows: list[list[Any]]

    def csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buffer.getvalue()


def predict_file(folder: str | Path, data: str, *, columns: str | None = None) -> Predictions:
    """Predictions of the adapter in `folder` for every example of `data` (labels, if any, are not read)."""
    request = prepare(folder, data, columns, need_labels=False)
    scorer = Scorer.load(request)
    logits = scorer.logits(scorer.examples())
    if scorer.session.task.regression:
        scores = logits[:, 0].tolist()
        return Predictions(request.data, ["index", "score"], [[i, float(v)] for i, v in enumerate(scores)])
    values = scorer.label_values
    names = list(scorer.session.task.label_names)
    with_names = names != values
    probabilities = logits.softmax(-1)
    header = ["index", "label", *(["label_name"] if with_names else []), *(f"prob_{v}" for v in values)]
    rows: list[list[Any]] = []
    for i, (best, probs) in enumerate(zip(logits.argmax(-1).tolist(), probabilities.tolist(), strict=True)):
        rows.append([i, values[best], *([names[best]] if with_names else []), *(round(p, 6) for p in probs)])
    return Predictions(request.data, header, rows)


def check_out_file(out: Path) -> None:
    """Refuse an output path that cannot be written, before any work (bad input writes nothing)."""
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give a file name", field="--out")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such folder", field="--out")


def write_atomically(out: Path, text: str) -> None:
    """Write through a temporary file in the same folder, so an interrupted write leaves no half file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
