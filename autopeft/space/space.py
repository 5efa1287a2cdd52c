"""`SearchSpace`: global and per-layer parameters, and the plan template they fill.

A configuration is a flat mapping of parameter names to values: global parameters (training settings,
and `shared` ones the plan reads in every layer) by name (`learning_rate`), per-layer ones as
`layer_<i>.<name>` for each searched layer. `compile`
turns a configuration into a `TrialConfig` (a PEFT plan plus training settings) that the trial job
runs; the plan template says, per layer, which methods apply and where their sizes come from
(`$name` refers to a parameter), each entry under an optional `when`.

    training: {learning_rate: {float: [1.0e-4, 1.0e-2], log: true}}
    layers:
      method: {choices: [none, lora, dora]}
      rank: {int: [2, 16], log: true, when: {method: [lora, dora]}}
    plan:
      - {method: $method, r: $rank, roles: [query, value], when: {method: [lora, dora]}}
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autopeft.errors import ConfigError
from autopeft.layer_selectors import parse_layer_selector
from autopeft.space.config import TRAINING_KEYS, TrialConfig
from autopeft.space.params import Condition, Param, dependency_order, parse_conditions


class PlanEntry(BaseModel):
    """One method of the plan template: fields (values or `$param` references) and when it applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, Any]
    when: tuple[Condition, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "fields" not in data:
            data = dict(data)
            when = parse_conditions(data.pop("when", None))
            if "method" not in data:
                raise ValueError("a plan entry needs `method` (a method name or a $parameter)")
            return {"fields": data, "when": when}
        return data

    def references(self) -> set[str]:
        return {v[1:] for v in self.fields.values() if _is_ref(v)} | {c.param for c in self.when}


class Constraint(BaseModel):
    """A named rule every configuration must respect: a limit on its exact trainable count, or that
    Hugging Face `peft` can express its plan (`peft_expressible: true`, so every trial can be exported)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    max_trainable_share: float | None = Field(default=None, gt=0, le=1)
    max_trainable_params: int | None = Field(default=None, gt=0)
    peft_expressible: Literal[True] | None = Field(
        default=None, description="Only plans that one Hugging Face peft adapter can hold.")

    @model_validator(mode="after")
    def _one_rule(self) -> Constraint:
        given = [self.max_trainable_share, self.max_trainable_params, self.peft_expressible]
        if sum(v is not None for v in given) != 1:
            raise ValueError("give exactly one of: max_trainable_share, max_trainable_params, peft_expressible")
        return self

    @property
    def limits_count(self) -> bool:
        """Whether this is a limit on the trainable count (else a rule on the plan)."""
        return self.peft_expressible is None

    def allows(self, trainable_params: int, trainable_share: float) -> bool:
        """Whether a configuration of this count passes (a rule on the plan passes every count)."""
        if self.max_trainable_share is not None:
            return trainable_share <= self.max_trainable_share
        if self.max_trainable_params is not None:
            return trainable_params <= self.max_trainable_params
        return True


#: How a warm start's seeds are named (`warm start: OTHER #7`, `engine.warm_start`): no default may be.
WARM_START_PREFIX = "warm start: "


class SpaceDefault(BaseModel):
    """A configuration practitioners try first, in the space's own terms: parameter values by name.

    A per-layer value applies to every searched layer; values of parameters that are inactive under the
    others (a rank where the method is none) are ignored. A study proposes its space's defaults before
    anything else, so its front is never worse than these usual choices.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    values: dict[str, Any]


class SearchSpace(BaseModel):
    """A joint space over adapter type, placement, size and learning rate; model-agnostic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    training: dict[str, Param] = Field(default_factory=dict, description=f"Any of: {', '.join(TRAINING_KEYS)}.")
    shared: dict[str, Param] = Field(default_factory=dict, description=(
        "Parameters drawn once for the whole model that the plan template reads in every layer (e.g. LoRA "
        "or DoRA everywhere, as one peft adapter must be)."))
    layers: dict[str, Param] = Field(default_factory=dict, description="Per-layer parameters.")
    searched_layers: str | int = Field(default="all", description="Layers that get the per-layer parameters.")
    plan: tuple[PlanEntry, ...] = Field(min_length=1, description="Plan template applied to each searched layer.")
    constraints: tuple[Constraint, ...] = ()
    defaults: tuple[SpaceDefault, ...] = Field(default=(), description=(
        "Configurations a study proposes first (LoRA r=8 on query and value, IA3, the head alone, ...)."))

    @model_validator(mode="after")
    def _names_resolve(self) -> SearchSpace:
        unknown = sorted(set(self.training) - set(TRAINING_KEYS))
        if unknown:
            raise ValueError(f"training.{unknown[0]} cannot be searched; accepted: {', '.join(TRAINING_KEYS)}")
        for (group_a, a), (group_b, b) in itertools.combinations(self._groups(), 2):
            clash = sorted(set(a) & set(b))
            if clash:
                raise ValueError(f"{clash[0]!r} is both a {group_a} and a {group_b} parameter")
        for group, params in self._groups():
            for name, param in params.items():
                for cond in param.when:
                    if cond.param not in params:
                        raise ValueError(f"{group}.{name}.when: {cond.param!r} is not a {group} parameter")
            try:
                dependency_order(params)
            except ValueError as err:
                raise ValueError(f"{group}.{err}") from None
        known = set(self.global_params) | set(self.layers)
        for i, entry in enumerate(self.plan):
            missing = sorted(entry.references() - known)
            if missing:
                raise ValueError(f"plan.{i}: ${missing[0]} is not a parameter; known: {', '.join(sorted(known))}")
        names = [d.name for d in self.defaults]
        for i, default in enumerate(self.defaults):
            unknown = sorted(set(default.values) - known)
            if unknown:
                raise ValueError(f"defaults.{i}.values: {unknown[0]!r} is not a parameter; known: "
                                 f"{', '.join(sorted(known))}")
            if default.name in names[:i]:
                raise ValueError(f"defaults.{i}.name: {default.name!r} names two defaults")
            if default.name.startswith(WARM_START_PREFIX):
                raise ValueError(f"defaults.{i}.name: {default.name!r} starts with {WARM_START_PREFIX!r}, which "
                                 "marks a warm start's seeds in `pareto` and `study show`; rename it")
            # Checked on one unprefixed layer: a layer's conditions read only that layer's parameters.
            self._expand_default(default, {**self.global_params, **{n: self.layers[n] for n in
                                                                    dependency_order(self.layers)}}, f"defaults.{i}")
        return self

    def _groups(self) -> tuple[tuple[str, dict[str, Param]], ...]:
        return ("training", self.training), ("shared", self.shared), ("layers", self.layers)

    @property
    def global_params(self) -> dict[str, Param]:
        """The parameters drawn once per configuration (training settings and shared ones), by name."""
        return {**self.training, **self.shared}

    @property
    def count_limits(self) -> tuple[Constraint, ...]:
        """The constraints that limit the trainable count (what the parameter bounds take into account)."""
        return tuple(c for c in self.constraints if c.limits_count)

    @property
    def needs_peft(self) -> bool:
        """Whether every configuration must be one that Hugging Face `peft` can express."""
        return any(c.peft_expressible for c in self.constraints)

    # -- expansion ----------------------------------------------------------------------------------
    def layer_indices(self, num_layers: int) -> list[int]:
        return parse_layer_selector(self.searched_layers, num_layers, field="searched_layers")

    def dimensions(self, num_layers: int) -> dict[str, Param]:
        """Every parameter of the space for a model with `num_layers` layers, in a fixed order.

        Training parameters, then shared ones, then each searched layer's; within each group every parameter comes after
        the ones its `when` reads, ties by name (`dependency_order`). The order never depends on how the
        mappings were written, so sampling and encoding give the same result for a space read from YAML
        or from the store (PostgreSQL's jsonb reorders keys).
        """
        dims = {name: self.training[name] for name in dependency_order(self.training)}
        dims.update({name: self.shared[name] for name in dependency_order(self.shared)})
        local = dependency_order(self.layers)
        for i in self.layer_indices(num_layers):
            for name in local:
                param = self.layers[name]
                when = tuple(c.model_copy(update={"param": f"layer_{i}.{c.param}"}) for c in param.when)
                dims[f"layer_{i}.{name}"] = param.model_copy(update={"when": when})
        return dims

    def default_configs(self, num_layers: int) -> list[tuple[str, dict[str, Any]]]:
        """The space's `defaults` as (name, configuration) for a model with ``num_layers`` layers."""
        dims = self.dimensions(num_layers)
        return [(d.name, self._expand_default(d, dims, f"defaults.{i}")) for i, d in enumerate(self.defaults)]

    def _expand_default(self, default: SpaceDefault, dims: Mapping[str, Param], where: str) -> dict[str, Any]:
        """``default`` as a configuration over ``dims``: each active parameter's value, by its unprefixed name."""
        config: dict[str, Any] = {}
        for name, param in dims.items():
            if not param.active(config):
                continue
            local = name if name in self.global_params else name.partition(".")[2] or name
            if local not in default.values:
                raise ValueError(f"{where}.values: {default.name!r} gives no {local!r}, which it needs")
            value = default.values[local]
            if not param.contains(value):
                raise ValueError(f"{where}.values.{local}: {value!r} is not {param.describe()}")
            config[name] = value
        return config

    def as_written(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with its keys in the order the space lists its parameters, for display only."""
        order = {name: i for i, name in enumerate([*self.training, *self.shared, *self.layers])}

        def key(name: str) -> tuple[int, int]:
            layer, _, local = name.partition(".")
            if local and layer.startswith("layer_") and layer[6:].isdigit():
                return int(layer[6:]) + 1, order.get(local, len(order))
            return 0, order.get(name, len(order))

        return {name: config[name] for name in sorted(config, key=key)}

    def sample(self, num_layers: int, rng: random.Random) -> dict[str, Any]:
        """A uniformly random configuration (log-uniform on log ranges); inactive parameters absent."""
        config: dict[str, Any] = {}
        for name, param in self.dimensions(num_layers).items():
            if param.active(config):
                config[name] = _draw(param, rng)
        return config

    # -- compilation --------------------------------------------------------------------------------
    def compile(self, config: Mapping[str, Any], num_layers: int, *, source: str | None = None) -> TrialConfig:
        """The `TrialConfig` (plan + training settings) of a configuration; checks every value."""
        dims = self.dimensions(num_layers)
        for name, param in dims.items():
            if param.active(config):
                if name not in config:
                    raise ConfigError("missing from the configuration", source=source, field=name)
                if not param.contains(config[name]):
                    raise ConfigError(f"{config[name]!r} is not {param.describe()}", source=source, field=name)
        unknown = sorted(set(config) - set(dims))
        if unknown:
            raise ConfigError("is not a parameter of this space", source=source, field=unknown[0])
        training = {k: config[k] for k in self.training if k in config}
        shared = {k: config[k] for k in self.global_params if k in config}
        plan: dict[str, list[dict[str, Any]]] = {}
        for i in self.layer_indices(num_layers):
            local = {name: config[f"layer_{i}.{name}"] for name in self.layers if f"layer_{i}.{name}" in config}
            try:
                methods = self.layer_methods({**shared, **local})
            except KeyError as err:  # a plan entry reads a parameter that does not exist in this configuration
                ref = str(err.args[0])
                field = ref if ref in self.global_params else f"layer_{i}.{ref}"
                raise ConfigError("missing from the configuration, and a plan entry reads it (give that entry a "
                                  "`when`)", source=source, field=field) from None
            if methods:
                plan[str(i)] = methods
        from autopeft.yamlio import validate

        return validate(TrialConfig, {"plan": plan, **training}, source=source)  # one-line ConfigError

    def layer_methods(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One layer's methods: the plan entries whose `when` holds, `$refs` filled from ``values``.

        ``values`` maps parameter names (global and this layer's, unprefixed) to values; a `$ref`
        missing from it raises `KeyError` with the parameter's name.
        """
        methods = []
        for entry in self.plan:
            if all(c.param in values and c.holds(values[c.param]) for c in entry.when):
                method = {k: values[v[1:]] if _is_ref(v) else v for k, v in entry.fields.items()}
                if method.get("method") not in (None, "none"):
                    methods.append(method)
        return methods


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and len(value) > 1


def _draw(param: Param, rng: random.Random) -> Any:
    import math

    if param.choices is not None:
        return rng.choice(param.choices)
    low, high = param.int_range or param.float_range  # type: ignore[misc]
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if param.log else rng.uniform(low, high)
    if param.int_range is not None:
        return min(high, max(low, round(value)))
    return value


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML; errors name the file and the field path."""
    from autopeft.yamlio import read_yaml, validate

    path = Path(path)
    return validate(SearchSpace, read_yaml(path), source=str(path))
