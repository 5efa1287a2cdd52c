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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}", source=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping at the top level", source=str(path))
    return data


def validate(model: type[M], data: Any, *, source: str | None = None, prefix: str = "") -> M:
    """`model.model_validate(data)` with pydantic's first error turned into one `ConfigError` line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise describe_validation_error(err, model, source=source, prefix=prefix) from None


def describe_validation_error(
    err: ValidationError, model: type[BaseModel], *, source: str | None, prefix: str = ""
) -> ConfigError:
    """One line: the dotted field path, pydantic's message, and for unknown fields the accepted ones."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    msg = first["msg"].removeprefix("Value error, ")  # our validators' messages read as they are
    if first["type"] == "extra_forbidden":
        allowed = _fields_at(model, first["loc"][:-1])
        msg = "unknown field" + (f"; accepted: {', '.join(allowed)}" if allowed else "")
    return ConfigError(msg, source=source, field=loc or None)


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
