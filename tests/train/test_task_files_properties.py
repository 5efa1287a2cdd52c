"""Property tests: any bytes in a `files` task's CSV, TSV or JSONL file either load or raise autopeft's own
error (`AutopeftError`: one line naming the file and line), never a `UnicodeDecodeError` or `csv.Error`."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft.errors import AutopeftError, DataError
from autopeft.train.tasks.loader import load_task
from autopeft.train.tasks.spec import TaskSpec

FOLDER = Path(tempfile.mkdtemp(prefix="autopeft-task-props-"))
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)
# Bytes that matter to the parsers: delimiters, quotes, braces, line ends, a NUL, UTF-8 and stray bytes.
tricky = st.text(alphabet='ab,\t\n\r"{}:[]01 \\\x00é', max_size=80).map(str.encode)
contents = st.binary(max_size=80) | tricky | st.builds(bytes.__add__, st.just(b"a,b\n"), tricky)


def _load(ext: str, raw: bytes, regression: bool = False) -> None:
    path = FOLDER / f"train{ext}"
    path.write_bytes(raw)
    spec = TaskSpec(name="files", train=path, text_columns=("a",), label_column="b", regression=regression,
                    validation_size=1)
    load_task(spec, FOLDER)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ext=st.sampled_from([".csv", ".tsv", ".jsonl"]), raw=contents, regression=st.booleans())
def test_any_bytes_load_or_raise_our_error(ext: str, raw: bytes, regression: bool) -> None:
    with contextlib.suppress(AutopeftError):
        _load(ext, raw, regression)


@pytest.mark.parametrize("ext", [".csv", ".tsv"])
def test_a_field_over_the_csv_limit_names_the_line(ext: str) -> None:
    sep = "," if ext == ".csv" else "\t"
    raw = f"a{sep}b\nok{sep}1\nno{sep}0\n{'x' * 200_000}{sep}1\n".encode()
    with pytest.raises(DataError, match=rf"train\{ext}:4: field larger than field limit"):
        _load(ext, raw)


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl"])
def test_a_byte_that_is_not_utf8_names_its_line_and_offset(ext: str) -> None:
    raw = b'{"a": "ok", "b": 1}\n{"a": "caf\xe9", "b": 0}\n' if ext == ".jsonl" else b"a,b\nok,1\ncaf\xe9,0\n"
    offset, line = raw.index(b"\xe9"), 2 if ext == ".jsonl" else 3
    with pytest.raises(DataError, match=rf"train\{ext}:{line}: byte 0xe9 at offset {offset} is not UTF-8; re-encode"):
        _load(ext, raw.replace(b",", b"\t") if ext == ".tsv" else raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ext=st.sampled_from([".csv", ".tsv"]), raw=contents, text=st.integers(0, 3), label=st.integers(0, 3))
def test_any_bytes_without_a_header_load_or_raise_our_error(ext: str, raw: bytes, text: int, label: int) -> None:
    """Header-less files by column index: the same rule, and every row (the first too) is data."""
    path = FOLDER / f"nohead{ext}"
    path.write_bytes(raw)
    spec = TaskSpec(name="files", train=path, header=False, text_columns=(text,), label_column=label,
                    validation_size=1)
    try:
        task = load_task(spec, FOLDER)
    except AutopeftError:
        return
    text_lines = raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line for line in text_lines if line]
    assert len(task.train) + len(task.validation) <= len(lines)
