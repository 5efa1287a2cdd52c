"""Reading CSV / TSV / JSONL rows by column name (or by 0-based index in a CSV / TSV file without a header
line), and turning them into examples, with clear errors.

TSV is read with quoting disabled (`csv.QUOTE_NONE`): GLUE's files contain bare `"` characters,
and TSV has no quoting convention (fields cannot hold tabs). CSV uses the standard CSV quoting.
A UTF-8 byte-order mark (MRPC starts with one) is dropped. Every error names the file and, where
there is one, the line, the column and the accepted values.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autopeft.errors import DataError
from autopeft.train.tasks.types import Example

Row = tuple[int, list[Any]]  # (line number, values of the requested columns)
Column = str | int  # a name, or a 0-based index in a file without a header line
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


def file_format(path: Path) -> str:
    """`csv`, `tsv` or `jsonl`, from the file extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; accepted: {', '.join(FORMATS)}")
    return fmt


def read_columns(path: Path, columns: Sequence[Column], *, header: Sequence[str] | None = None,
                 has_header: bool = True) -> list[Row]:
    """Values of `columns` for every row of `path` (blank lines skipped).

    `header` names the columns of a file that has no header line (CoLA); otherwise the first line
    (CSV/TSV) or each object's keys (JSONL) name them. With `has_header=False` (CSV/TSV only) the
    first line is data and `columns` are 0-based indices.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    fmt = file_format(path)
    if not has_header and fmt == "jsonl":
        raise DataError(f"{path}: a JSONL file has no header line to leave out; name its keys as columns")
    try:
        rows = list(_jsonl(path, columns) if fmt == "jsonl" else _delimited(path, columns, fmt, header, has_header))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def not_utf8(path: Path) -> DataError:
    """Where the first byte that is not UTF-8 sits (line and byte offset), and what to do about it."""
    data = path.read_bytes()
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = bom + err.start
        line = data.count(b"\n", 0, offset) + 1
        return DataError(f"{path}:{line}: byte 0x{data[offset]:02x} at offset {offset} is not UTF-8; re-encode the "
                         "file as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)")
    return DataError(f"{path}: not UTF-8; re-encode the file as UTF-8")


def _delimited(path: Path, columns: Sequence[Column], fmt: str, header: Sequence[str] | None,
               has_header: bool) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        tsv = fmt == "tsv"
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(handle)
        rows = _checked(reader, path, quoted=not tsv)
        if header is None and not has_header:
            index, expected = _positions(path, columns), "0-based column indices"
        else:
            names = list(header) if header is not None else [c.strip() for c in next(rows, [])]
            missing = [c for c in columns if c not in names]
            if missing:
                raise DataError(f"{path}: no column {missing[0]!r}; columns: {', '.join(names) or '(none)'}")
            index, expected = [names.index(str(c)) for c in columns], f"{len(names)}: {', '.join(names)}"
        need = max(index) + 1
        for fields in rows:
            if not fields or fields == [""]:
                continue
            if len(fields) < need:
                lost = columns[next(i for i, j in enumerate(index) if j >= len(fields))]
                raise DataError(
                    f"{path}:{reader.line_num}: {len(fields)} fields, column {lost!r} is missing (expected {expected})"
                )
            yield reader.line_num, [fields[j] for j in index]


def _positions(path: Path, columns: Sequence[Column]) -> list[int]:
    """The indices of a file without a header line: every column must be a 0-based index."""
    names = [c for c in columns if not isinstance(c, int) or isinstance(c, bool) or c < 0]
    if names:
        raise DataError(f"{path}: without a header line, columns are 0-based indices, not {names[0]!r}")
    return [int(c) for c in columns]


def _checked(reader: Any, path: Path, *, quoted: bool) -> Iterator[list[str]]:
    """The reader's rows; a CSV error (a field over the size limit, often from an unbalanced quote) names
    the line instead of escaping as `csv.Error`."""
    while True:
        start = reader.line_num + 1  # where the record begins (a quoted field may run over many lines)
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            hint = ' (an unbalanced " may have joined lines)' if quoted else ""
            raise DataError(f"{path}:{start}: {err}{hint}") from None
        yield fields


def _jsonl(path: Path, columns: Sequence[Column]) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, Mapping):
                raise DataError(f"{path}:{line_no}: expected a JSON object per line")
            for c in columns:
                if c not in obj:
                    raise DataError(f"{path}:{line_no}: no column {c!r}; keys: {', '.join(map(str, obj))}")
            yield line_no, [obj[c] for c in columns]


def label_key(value: Any) -> str:
    """A raw label as the string used to look it up (`1`, `"1"` and ` 1 ` are the same label)."""
    return str(value).strip()


def discover_labels(rows: Sequence[Row]) -> tuple[str, ...]:
    """Distinct labels of the last column, sorted (numerically when every label is an integer)."""
    keys = {label_key(values[-1]) for _, values in rows}
    if all(_is_int(k) for k in keys):
        return tuple(sorted(keys, key=int))
    return tuple(sorted(keys))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def to_examples(
    rows: Sequence[Row], source: Path | str, columns: Sequence[Column],
    labels: Sequence[str] | Mapping[str, int] | None
) -> list[Example]:
    """Rows of `columns` = (text, [text_pair,] label) to examples.

    `labels` maps label values to class indices by position (or explicitly, several values to one index);
    None means the label is a float score.
    """
    index = None if labels is None else dict(labels) if isinstance(labels, Mapping) else \
        {name: i for i, name in enumerate(labels)}
    label_column, texts = columns[-1], columns[:-1]
    examples = []
    for line, values in rows:
        for name, text in zip(texts, values, strict=False):
            if not isinstance(text, str):
                raise DataError(f"{source}:{line}: column {name!r} is {text!r}, expected text")
        raw = values[-1]
        label: int | float
        if index is None:
            try:
                label = float(raw)
            except (TypeError, ValueError):
                label = math.nan
            if not math.isfinite(label):
                where = f"{source}:{line}: column {label_column!r}"
                raise DataError(f"{where} value {raw!r} is not a finite number")
        else:
            key = label_key(raw)
            if key not in index:
                raise DataError(
                    f"{source}:{line}: column {label_column!r} has unknown label {key!r}; "
                    f"accepted: {', '.join(index)}"
                )
            label = index[key]
        pair = values[1] if len(texts) == 2 else None
        examples.append(Example(text=values[0], label=label, text_pair=pair))
    return examples
