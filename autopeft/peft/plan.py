"""The PEFT plan: for each layer, which methods apply with which sizes.

A plan is what a trial applies and what export writes. Users write it compactly, with layer
selectors (`all`, `3`, `0-2`, `0,2,4`); `PeftPlan.from_selectors` expands it for a model's layer
count and checks that it fits (layers in range, no two low-rank updates on one projection, ...).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from autopeft.errors import ConfigError
from autopeft.layer_selectors import parse_layer_selector
from autopeft.peft.lora.config import LoraSpec
from autopeft.peft.registry import METHODS, registered
from autopeft.peft.roles import Role
from autopeft.peft.spec import MethodSpecBase

#: Every registered method's name, in attach order: the registry is the one list of methods.
METHOD_NAMES = tuple(info.name for info in registered())

if TYPE_CHECKING:
    MethodSpec: TypeAlias = MethodSpecBase
else:  # the union of the registered spec types, discriminated on `method`
    MethodSpec = Annotated[functools.reduce(operator.or_, [info.spec_type for info in registered()]),
                           Field(discriminator="method")]

_METHODS_ADAPTER: TypeAdapter[list[MethodSpec]] = TypeAdapter(list[MethodSpec])


class PeftPlan(BaseModel):
    """Methods per layer index. Layers not listed carry no adapter; the classifier head always trains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_layers: int = Field(gt=0, description="Layer count of the model the plan was made for.")
    layers: dict[int, tuple[MethodSpec, ...]] = Field(default_factory=dict)

    def methods(self, layer: int) -> tuple[MethodSpec, ...]:
        return self.layers.get(layer, ())

    @property
    def adapted_layers(self) -> list[int]:
        return sorted(i for i, m in self.layers.items() if m)

    @property
    def lowest_adapted_layer(self) -> int | None:
        layers = self.adapted_layers
        return layers[0] if layers else None

    def uses(self, method: str) -> bool:
        return any(spec.method == method for specs in self.layers.values() for spec in specs)

    @classmethod
    def from_selectors(
        cls, raw: Mapping[Any, Any], num_layers: int, *, source: str | None = None
    ) -> PeftPlan:
        """Expand `{selector: [method, ...]}` for a model with `num_layers` layers.

        Methods from several selectors that match one layer are all applied, in file order.
        Raises `ConfigError` naming the field and the accepted values on any misfit.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError("must be a mapping of layer selector to a list of methods", source=source,
                              field="plan")
        layers: dict[int, list[Any]] = {}
        for selector, methods in raw.items():
            where = f"plan.{selector}"
            indices = parse_layer_selector(selector, num_layers, source=source, field=where)
            specs = _parse_methods(methods, source=source, field=where)
            for i in indices:
                layers.setdefault(i, []).extend(specs)
        plan = cls(num_layers=num_layers, layers={i: tuple(s) for i, s in sorted(layers.items())})
        plan.check(source=source)
        return plan

    def check(self, *, source: str | None = None) -> None:
        """Reject plans that cannot be applied: out-of-range layers and clashing methods."""
        for layer, specs in self.layers.items():
            where = f"plan.layer {layer}"
            if not 0 <= layer < self.num_layers:
                raise ConfigError(
                    f"layer {layer} is out of range; the model has layers 0-{self.num_layers - 1}",
                    source=source, field=where,
                )
            low_rank: dict[Role, str] = {}
            counts: dict[str, int] = {}
            for spec in specs:
                counts[spec.method] = counts.get(spec.method, 0) + 1
                if isinstance(spec, LoraSpec):  # DoraSpec too
                    for role in spec.roles:
                        if role in low_rank:
                            raise ConfigError(
                                f"two low-rank updates ({low_rank[role]} and {spec.method}) on role {role.value}",
                                source=source, field=where,
                            )
                        low_rank[role] = spec.method
            for method, count in counts.items():
                if count > 1 and not METHODS[method].repeatable:
                    raise ConfigError(f"{method} appears {count} times; at most once per layer",
                                      source=source, field=where)


def check_methods(raw: Any, *, source: str | None = None) -> None:
    """Validate every method entry of a compact plan now; the layer selectors wait for the model's
    layer count (`PeftPlan.from_selectors`)."""
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a mapping of layer selector to a list of methods", source=source, field="plan")
    for selector, methods in raw.items():
        _parse_methods(methods, source=source, field=f"plan.{selector}")


def _parse_methods(methods: Any, *, source: str | None, field: str) -> list[Any]:
    if isinstance(methods, Mapping):
        methods = [methods]
    try:
        return list(_METHODS_ADAPTER.validate_python(methods))
    except ValidationError as err:
        raise ConfigError(_describe(err), source=source, field=field) from None


def _describe(err: ValidationError) -> str:
    """One line from pydantic's first error: where, what, and what is accepted."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not isinstance(p, int) or len(first["loc"]) == 1)
    msg = first["msg"]
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        msg = f"unknown or missing method; accepted: {', '.join(METHOD_NAMES)}"
    elif first["type"] == "enum":
        msg = f"{msg}; accepted roles: {', '.join(r.value for r in Role)}"
    return f"{loc}: {msg}" if loc else msg
