"""Numeric encodings of configurations, for model-based samplers (BoTorch GPs, mutations, Sobol points).

One column per parameter, in the order of `SearchSpace.dimensions`. Two coordinate systems:

* **model space** (`encode` / `decode`, what a GP sees): int and float ranges scaled to [0, 1] (on a
  log scale where the range is `log`); categoricals whose choices are increasing numbers (sizes,
  ranks) are *ordinal* columns, their choice index scaled to [0, 1], so a GP knows 8 lies between 4
  and 16; every other categorical is an index column 0..k-1 listed in `cat_dims` (for
  `MixedSingleTaskGP`'s categorical kernel), so list-valued choices (module roles) work by index.
* **unit space** (`decode_unit` / `to_unit`): every column uniform on [0, 1), categoricals split into
  k equal cells; a uniform or Sobol point of the unit cube decodes to a `SearchSpace.sample`-like
  draw, and a small step in it is a mutation.

Inactive parameters (a condition does not hold) are encoded as a fixed value: 0.5 in numeric
columns and an extra category ``k`` (one past the last choice) in categorical columns. Why: the
parent column already tells the model whether the parameter exists, so all configurations that
lack it must map to one point along that column (otherwise a GP would see fake differences between
identical configurations); the middle of a numeric column is equally far from small and large
values, so a missing rank does not look like a small one, and an own category keeps "absent"
distinct from every real choice. `decode` ignores those columns wherever the parameter is inactive.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from autopeft.errors import ConfigError
from autopeft.space.params import Param

FloatArray = NDArray[np.float64]
#: The model-space value of an inactive numeric column.
INACTIVE_NUMERIC = 0.5


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a configuration value (lists and tuples alike become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    return value


def config_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity of a configuration, to find duplicates (lists compare as tuples)."""
    return tuple(sorted((name, _freeze(value)) for name, value in config.items()))


def choice_index(param: Param, value: Any) -> int:
    """The index of ``value`` among ``param.choices``: equal, equal as tuples, or numerically close."""
    choices = param.choices or ()
    for i, choice in enumerate(choices):
        if choice == value:
            return i
    frozen = _freeze(value)
    for i, choice in enumerate(choices):
        if _freeze(choice) == frozen:
            return i
    if _is_number(value):
        for i, choice in enumerate(choices):
            if _is_number(choice) and math.isclose(choice, value, rel_tol=1e-9):
                return i
    raise ValueError(f"{value!r} is not {param.describe()}")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_ordinal(param: Param) -> bool:
    """Categorical choices that are strictly increasing numbers are ordered sizes, not labels."""
    choices = param.choices
    if choices is None or len(choices) < 2 or not all(_is_number(c) for c in choices):
        return False
    return all(a < b for a, b in itertools.pairwise(choices))


@dataclass(frozen=True)
class _Column:
    name: str
    param: Param
    kind: str  # "range", "ordinal" or "categorical"

    @property
    def size(self) -> int:
        return len(self.param.choices or ())

    def _scale(self) -> tuple[float, float]:
        low, high = self.param.int_range or self.param.float_range  # type: ignore[misc]
        return (math.log(low), math.log(high)) if self.param.log else (float(low), float(high))

    # -- ranges: value <-> [0, 1] ---------------------------------------------------------------------
    def range_to_unit(self, value: float) -> float:
        lo, hi = self._scale()
        t = math.log(value) if self.param.log else float(value)
        return 0.5 if hi == lo else min(1.0, max(0.0, (t - lo) / (hi - lo)))

    def range_from_unit(self, u: float) -> Any:
        lo, hi = self._scale()
        t = lo + min(1.0, max(0.0, float(u))) * (hi - lo)
        value = math.exp(t) if self.param.log else t
        low, high = self.param.int_range or self.param.float_range  # type: ignore[misc]
        if self.param.int_range is not None:
            return int(min(high, max(low, round(value))))
        return float(min(high, max(low, value)))


class SpaceEncoder:
    """Configurations <-> numeric vectors over the expanded dimensions ``dims`` (see module docstring)."""

    def __init__(self, dims: Mapping[str, Param], *, ordinal_choices: bool = True) -> None:
        self.dims = dict(dims)
        self.columns = [
            _Column(name, p, "range" if p.choices is None else
                    "ordinal" if ordinal_choices and _is_ordinal(p) else "categorical")
            for name, p in self.dims.items()
        ]
        self.names = [c.name for c in self.columns]

    @property
    def dim(self) -> int:
        return len(self.columns)

    @property
    def cat_dims(self) -> list[int]:
        """Indices of the categorical (index-coded) columns, for `MixedSingleTaskGP(cat_dims=...)`."""
        return [i for i, c in enumerate(self.columns) if c.kind == "categorical"]

    @property
    def bounds(self) -> FloatArray:
        """``(2, dim)`` lower and upper values of each model-space column (categoricals: 0..k, k = inactive)."""
        upper = [float(c.size) if c.kind == "categorical" else 1.0 for c in self.columns]
        return np.array([[0.0] * self.dim, upper], dtype=np.float64).reshape(2, self.dim)

    # -- model space ----------------------------------------------------------------------------------
    def encode(self, config: Mapping[str, Any]) -> FloatArray:
        """The model-space vector of a configuration; inactive parameters get the fixed inactive code."""
        out = np.empty(self.dim, dtype=np.float64)
        for j, col in enumerate(self.columns):
            if not col.param.active(config):
                out[j] = float(col.size) if col.kind == "categorical" else INACTIVE_NUMERIC
                continue
            if col.name not in config:
                raise ConfigError("missing from the configuration", field=col.name)
            try:
                out[j] = self._encode_value(col, config[col.name])
            except (TypeError, ValueError) as err:
                raise ConfigError(str(err), field=col.name) from None
        return out

    def encode_many(self, configs: Iterable[Mapping[str, Any]]) -> FloatArray:
        """``(n, dim)`` model-space vectors."""
        rows = [self.encode(c) for c in configs]
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.dim)

    @staticmethod
    def _encode_value(col: _Column, value: Any) -> float:
        if col.kind == "range":
            return col.range_to_unit(float(value))
        index = choice_index(col.param, value)
        if col.kind == "ordinal":
            return index / (col.size - 1)
        return float(index)

    def decode(self, vector: ArrayLike) -> dict[str, Any]:
        """The configuration of a model-space vector: values rounded and clipped, inactive ones dropped."""
        vec = self._check(vector)
        values = []
        for col, x in zip(self.columns, vec, strict=True):
            if col.kind == "range":
                values.append(col.range_from_unit(x))
            else:
                raw = x * (col.size - 1) if col.kind == "ordinal" else x
                index = int(min(col.size - 1, max(0, round(float(raw)))))
                values.append(col.param.choices[index])  # type: ignore[index]
        return self._activate(values)

    # -- unit space -----------------------------------------------------------------------------------
    def decode_unit(self, u: ArrayLike) -> dict[str, Any]:
        """The configuration at a point of the unit cube (uniform points give uniform draws)."""
        vec = self._check(u)
        values = []
        for col, x in zip(self.columns, vec, strict=True):
            if col.kind == "range":
                values.append(col.range_from_unit(x))
            else:
                index = int(min(col.size - 1, max(0, math.floor(float(x) * col.size))))
                values.append(col.param.choices[index])  # type: ignore[index]
        return self._activate(values)

    def to_unit(self, config: Mapping[str, Any], fill: ArrayLike) -> FloatArray:
        """The unit-cube point of a configuration (choices at their cell centres); inactive columns from ``fill``."""
        out = np.array(fill, dtype=np.float64).reshape(self.dim)
        for j, col in enumerate(self.columns):
            if col.name in config and col.param.active(config):
                if col.kind == "range":
                    out[j] = col.range_to_unit(float(config[col.name]))
                else:
                    out[j] = (choice_index(col.param, config[col.name]) + 0.5) / col.size
        return out

    # -- checks ---------------------------------------------------------------------------------------
    def is_valid(self, config: Mapping[str, Any]) -> bool:
        """Every active parameter present and in range, nothing inactive or unknown present."""
        for name, param in self.dims.items():
            if param.active(config) != (name in config):
                return False
            if name in config and not param.contains(config[name]):
                return False
        return set(config) <= set(self.dims)

    def _check(self, vector: ArrayLike) -> FloatArray:
        vec = np.asarray(vector, dtype=np.float64).reshape(-1)
        if vec.shape[0] != self.dim:
            raise ValueError(f"expected a vector of {self.dim} values, got {vec.shape[0]}")
        return np.nan_to_num(vec, nan=0.5)

    def _activate(self, values: Sequence[Any]) -> dict[str, Any]:
        """Keep the values whose parameter is active, deciding in dimension order (as `SearchSpace.sample`)."""
        config: dict[str, Any] = {}
        for col, value in zip(self.columns, values, strict=True):
            if col.param.active(config):
                config[col.name] = value
        return config
