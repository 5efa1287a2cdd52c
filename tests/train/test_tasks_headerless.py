"""`files` tasks without a header line (`header: false`, columns by 0-based index), and one-line recipe errors
for columns, header and union-typed fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopeft.errors import ConfigError, DataError
from autopeft.train.recipe import TrialRecipe
from autopeft.train.tasks import TaskSpec, load_task
from autopeft.yamlio import validate


def cola_rows(glue_dir: Path, count: int) -> list[tuple[str, str]]:
    """(label, sentence) of the first `count` rows of CoLA's train.tsv (itself without a header line)."""
    rows = []
    with (glue_dir / "cola" / "train.tsv").open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            rows.append((fields[1], fields[3]))
            if len(rows) == count:
                break
    return rows


def headerless(tmp_path: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    """A TSV as many corpora ship it: label, then sentence, no header line."""
    path = tmp_path / name
    path.write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    return path


def spec(**task: Any) -> TaskSpec:
    return validate(TaskSpec, {"name": "files", "header": False, "text_columns": [1], "label_column": 0, **task},
                    source="recipe.yaml", prefix="task")


def test_a_real_headerless_tsv_by_index(tmp_path: Path, glue_dir: Path) -> None:
    rows = cola_rows(glue_dir, 60)
    train = headerless(tmp_path, "train.tsv", rows[:40])
    headerless(tmp_path, "dev.tsv", rows[40:])
    task = load_task(spec(train="train.tsv", dev="dev.tsv", validation_size=5), base_dir=tmp_path)
    assert len(task.train) + len(task.validation) == 40  # the first line is data, not a header
    assert [ex.text for ex in task.dev] == [text for _, text in rows[40:]]
    assert task.label_names == ("0", "1")
    assert [ex.label for ex in task.dev] == [int(label) for label, _ in rows[40:]]
    assert train.read_text(encoding="utf-8").splitlines()[0].split("\t")[1] in {
        ex.text for ex in task.train + task.validation}


def test_a_text_pair_and_csv_by_index(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("".join(f'"premise {i}, long",hypothesis {i},{"yes" if i % 2 else "no"}\n' for i in range(10)),
                    encoding="utf-8")
    task = load_task(spec(train=str(path), text_columns=[0, 1], label_column=2, validation_size=2))
    first = (task.train + task.validation)[0]
    assert (first.text, first.text_pair) in {(f"premise {i}, long", f"hypothesis {i}") for i in range(10)}
    assert task.label_names == ("no", "yes")


def test_a_short_line_names_the_index(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("0\ta\n1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.tsv:2: 1 fields, column 1 is missing \(expected 0-based column"):
        load_task(spec(train=str(path)))


@pytest.mark.parametrize(("task", "words"), [
    ({"header": True}, ("task:", "column 1 is an index", "header: false")),
    ({"text_columns": ["sentence"]}, ("task:", "0-based indices", "'sentence'")),
    ({"text_columns": [1, 2, 3]}, ("task.text_columns:", "one text column, or two", "got 3")),
    ({"text_columns": [True]}, ("task.text_columns:", "True is not a column", "accepted: a name")),
    ({"text_columns": [-1]}, ("task.text_columns:", "-1 is negative")),
    ({"label_column": [0]}, ("task.label_column:", "[0] is not a column")),
    ({"text_columns": [""], "header": True, "label_column": "y"}, ("task.text_columns:", "empty")),
    ({"train": "t.jsonl"}, ("task:", "header: false is for CSV/TSV", "t.jsonl")),
    ({"header": "maybe"}, ("task.header:", "valid boolean")),
    ({"validation_size": "abc"}, ("task.validation_size:", "valid integer or a valid number", "'abc'")),
])
def test_bad_columns_are_one_line(task: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as err:
        spec(**{"train": "t.tsv", **task})
    message = str(err.value)
    assert message.startswith("recipe.yaml: ") and "\n" not in message
    assert ".int" not in message and "tuple[" not in message  # no union-member tags
    for word in words:
        assert word in message, message


def test_header_false_only_for_files() -> None:
    with pytest.raises(ConfigError, match="header: false is for files tasks, not 'demo'"):
        validate(TaskSpec, {"name": "demo", "header": False}, source="r.yaml", prefix="task")


def test_named_columns_still_work_and_ints_with_header_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("label\tsentence\n0\ta\n1\tb\n0\tc\n", encoding="utf-8")
    named = validate(TaskSpec, {"name": "files", "train": str(path), "text_columns": "sentence",
                                "label_column": "label", "validation_size": 1}, source="r.yaml")
    assert named.text_columns == ("sentence",) and len(load_task(named).train) == 2


_NOT_A_COLUMN = st.one_of(st.booleans(), st.floats(allow_nan=True), st.dictionaries(st.text(max_size=3), st.integers()),
                          st.lists(st.integers(), min_size=1, max_size=2).map(lambda v: [v]), st.integers(max_value=-1))


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(_NOT_A_COLUMN, st.lists(_NOT_A_COLUMN, min_size=1, max_size=2),
                      st.lists(st.integers(0, 5), min_size=3, max_size=6)),
       header=st.booleans())
def test_any_bad_text_columns_is_one_config_line(text: Any, header: bool) -> None:
    """Whatever YAML puts in text_columns, the recipe error is one line naming the file and the task field."""
    data = {"model": {"name": "m"}, "fidelity": {"min": 1, "max": 2},
            "task": {"name": "files", "train": "t.tsv", "header": header, "text_columns": text, "label_column": 0}}
    with pytest.raises(ConfigError) as err:
        validate(TrialRecipe, data, source="recipe.yaml")
    message = str(err.value)
    assert message.startswith("recipe.yaml: task") and "\n" not in message
    assert "tuple[" not in message and "function-" not in message
