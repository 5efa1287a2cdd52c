"""Search-space parameters: categorical, integer and float (optionally log-scaled), with conditions.

Written in YAML as one key that names the kind, so a space reads like a table:
`{choices: [0, 8, 16]}`, `{int: [2, 16], log: true}`, `{float: [1.0e-4, 1.0e-2], log: true}`, and an
optional `when: {other_param: [values]}` (or `{other_param: {ne: value}}`) that makes the parameter
exist only when another one takes given values (a LoRA rank exists only where the method is LoRA).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Condition(BaseModel):
    """`param in values` (a list) or `param != value` (`{ne: value}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    param: str
    values: tuple[Any, ...] | None = None
    not_equal: Any = None

    def holds(self, value: Any) -> bool:
        if self.values is not None:
            return value in self.values
        return value != self.not_equal


def parse_conditions(raw: Any) -> tuple[Condition, ...]:
    """`{a: [x, y], b: {ne: 0}}` -> conditions, sorted by parameter; every one must hold.

    Sorted so that a space reads the same however its mapping was ordered (PostgreSQL's jsonb does not
    keep key order).
    """
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValueError("`when` must map parameter names to a list of values or {ne: value}")
    out = []
    for name, rule in raw.items():
        if isinstance(rule, Mapping):
            if set(rule) != {"ne"}:
                raise ValueError(f"when.{name}: accepted: a list of values or {{ne: value}}")
            out.append(Condition(param=str(name), not_equal=rule["ne"]))
        elif isinstance(rule, list | tuple):
            out.append(Condition(param=str(name), values=tuple(rule)))
        else:
            out.append(Condition(param=str(name), values=(rule,)))
    return tuple(sorted(out, key=lambda c: c.param))


class Param(BaseModel):
    """One dimension of the space. Exactly one of `choices`, `int`, `float` is given."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    choices: tuple[Any, ...] | None = Field(default=None, min_length=1, description="Categorical values.")
    int_range: tuple[int, int] | None = Field(default=None, alias="int", description="Inclusive integer range.")
    float_range: tuple[float, float] | None = Field(default=None, alias="float", description="Float range.")
    log: bool = Field(default=False, description="Sample and encode on a log scale (ranges only, low > 0).")
    when: tuple[Condition, ...] = Field(default=(), description="Conditions under which the parameter exists.")

    @model_validator(mode="before")
    @classmethod
    def _conditions(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "when" in data:
            data = {**data, "when": parse_conditions(data["when"])}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        given = [k for k in ("choices", "int_range", "float_range") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of: choices, int, float")
        bounds = self.int_range or self.float_range
        if bounds is not None:
            low, high = bounds
            if low > high:
                raise ValueError(f"range [{low}, {high}] is empty")
            if self.log and low <= 0:
                raise ValueError(f"a log-scaled range needs low > 0, got {low}")
        elif self.log:
            raise ValueError("log applies to int and float ranges only")
        return self

    @property
    def kind(self) -> str:
        return "categorical" if self.choices is not None else "int" if self.int_range is not None else "float"

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        low, high = self.int_range or self.float_range  # type: ignore[misc]
        if self.int_range is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        return isinstance(value, int | float) and low <= value <= high

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        low, high = self.int_range or self.float_range  # type: ignore[misc]
        return f"{self.kind} in [{low}, {high}]" + (" (log)" if self.log else "")

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the parameter exists given the other values (a missing parent means inactive)."""
        return all(c.param in values and c.holds(values[c.param]) for c in self.when)


def dependency_order(params: Mapping[str, Param]) -> list[str]:
    """The names of ``params``, each after the parameters its `when` reads, ties broken by name.

    Why: a condition can be evaluated only once its parent has a value, and whatever walks parameters
    (sampling, encoding, enumeration) must give the same result for the same space however its mapping
    was ordered: a space stored as PostgreSQL jsonb comes back with its keys reordered. Parents that
    are not in ``params`` are ignored here (`SearchSpace` rejects them); a cycle raises `ValueError`.
    """
    parents = {name: {c.param for c in p.when if c.param in params} for name, p in params.items()}
    children: dict[str, list[str]] = {name: [] for name in params}
    for name, ps in parents.items():
        for parent in ps:
            children[parent].append(name)
    waiting = {name: len(ps) for name, ps in parents.items()}
    ready = [name for name, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(params):
        stuck = set(params) - set(order)
        path, name = [], min(stuck)
        while name not in path:  # every stuck parameter has a stuck parent: walk up until one repeats
            path.append(name)
            name = min(parents[name] & stuck)
        cycle = [*path[path.index(name):], name]
        raise ValueError(f"{cycle[0]}.when: the conditions form a cycle ({' -> '.join(cycle)})")
    return order
