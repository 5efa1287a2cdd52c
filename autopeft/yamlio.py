"""Reading YAML files into pydantic models with one-line errors that name the file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from autopeft.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping; a missing file, a syntax error or a non-mapping is a `ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror}", source=str(path)) from None
    except UnicodeDecodeError as err:
        line = path.read_bytes().count(b"\n", 0, err.start) + 1
        raise ConfigError(f"byte 0x{err.object[err.start]:02x} at offset {err.start} (line {line}) is not UTF-8; "
                          "save the file as UTF-8", source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}", source=str(path)) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping at the top level", source=str(path))
    _check_tree(data, source=str(path))
    return data


#: Deepest nesting a file may use (spaces, recipes and configurations need about 6).
MAX_DEPTH = 50


def _check_tree(data: Any, *, source: str) -> None:
    """Refuse a document that contains itself (a YAML alias to its own anchor) or nests absurdly deep:
    both pass pydantic's `Any` fields and break later (JSON for the store, recursion)."""
    _height(data, source, set(), {})


def _height(data: Any, source: str, parents: set[int], done: dict[int, int]) -> int:
    """Nesting height of `data`; each shared (aliased) node is walked once."""
    if not isinstance(data, dict | list):
        return 0
    key = id(data)
    if key in done:
        return done[key]
    if key in parents:
        raise ConfigError("an alias refers to a mapping or list that contains it (a cycle)", source=source)
    if len(parents) >= MAX_DEPTH:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=source)
    parents.add(key)
    values = data.values() if isinstance(data, dict) else data
    height = 1 + max((_height(v, source, parents, done) for v in values), default=0)
    parents.discard(key)
    if len(parents) + height > MAX_DEPTH:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=source)
    done[key] = height
    return height


def validate(model: type[M], data: Any, *, source: str | None = None, prefix: str = "") -> M:
    """`model.model_validate(data)` with pydantic's first error turned into one `ConfigError` line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise describe_validation_error(err, model, source=source, prefix=prefix, data=data) from None


def describe_validation_error(
    err: ValidationError, model: type[BaseModel], *, source: str | None, prefix: str = "", data: Any = None
) -> ConfigError:
    """One line: the dotted field path, pydantic's message, and for unknown fields the accepted ones.

    A value that fits no member of a union (`int | float`) fails once per member, each under a tag
    (`validation_size.int`, `validation_size.float`): the tags are left out of the path (`data`, the
    validated input, tells a tag from a field) and the members' messages are joined into one.
    """
    errors = err.errors()
    first = errors[0]
    path = _without_tags(first["loc"], data)
    loc = ".".join(str(p) for p in (prefix, *path) if p != "")
    msg = first["msg"].removeprefix("Value error, ")  # our validators' messages read as they are
    if first["type"] == "extra_forbidden":
        allowed = _fields_at(model, first["loc"][:-1])
        msg = "unknown field" + (f"; accepted: {', '.join(allowed)}" if allowed else "")
    else:
        same = [e for e in errors if _without_tags(e["loc"], data) == path]
        msg = _union_message(same) or msg
    return ConfigError(msg, source=source, field=loc or None)


#: Tags pydantic puts in an error's path for the member of a union that failed (besides `list[...]`-like ones).
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list", "tuple", "bytes", "is-instance"})


def _without_tags(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """`loc` without union-member tags: a part is a field or key when the data holds it there, or (for a
    missing field) when it reads as a field name; anything else at that place is a tag."""
    kept: list[Any] = []
    current = data
    for part in loc:
        if _holds(current, part):
            kept.append(part)
            current = current[part]
        elif _is_tag(part) or (data is not None and not isinstance(current, dict)):
            continue
        else:
            kept.append(part)
            current = None
    return tuple(kept)


def _holds(data: Any, part: Any) -> bool:
    """`data[part]` exists: a key of a mapping, or an index of a list."""
    if isinstance(data, dict):
        return part in data
    return isinstance(data, list | tuple) and isinstance(part, int) and 0 <= part < len(data)


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _TYPE_TAGS or not part.isidentifier() or part[:1].isupper())


def _union_message(errors: list[Any]) -> str | None:
    """`Input should be a valid integer or a valid number (got 'abc')` from one error per union member."""
    wanted = [e["msg"].removeprefix("Input should be ").split(",")[0] for e in errors
              if e["msg"].startswith("Input should be ")]
    if len(errors) < 2 or len(wanted) != len(errors):
        return None
    return f"Input should be {' or '.join(dict.fromkeys(wanted))} (got {errors[0].get('input')!r})"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the nested model that `loc` points into (empty if it cannot be followed)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    return list(getattr(current, "model_fields", {}) or [])


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
