"""`ParamCounter`: a configuration's exact trainable parameter count, without weights and in microseconds.

The study's samplers call `count` on thousands of candidate configurations (to know the "% params"
objective and the constraints before anything trains), so building and adapting the whole model per
call is too slow. The count is additive over layers, so it is computed once per distinct layer
setting on a copy of one `meta`-device layer and cached.

Why this is exact (equal to `apply_plan(model, plan).trainable_params` on the full model):

- `apply_plan` freezes the base, attaches each layer's methods, then unfreezes the classifier head,
  so `trainable = head + sum over layers of the parameters the methods created in that layer`.
- A method creates its parameters inside its layer only, from that layer's module shapes and the
  model config (hidden size, heads), never from the layer index or other layers (`peft/*/model.py`).
- Layer `i`'s methods are a function of the values the plan template reads for that layer (its
  `$references` and its `when` parameters, looked up as `SearchSpace.compile` does). So the cache
  key is (layer structure, those values); layers are grouped by structure (the class, names, shapes
  and dtypes of their modules and parameters), and checked, not assumed, to be alike.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autopeft.errors import ConfigError
from autopeft.layer_selectors import parse_layer_selector
from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.context import LayerContext
from autopeft.peft.inject import model_layers
from autopeft.peft.registry import method
from autopeft.peft.roles import ArchitectureMap, architecture_for, role_map_from_dict
from autopeft.space.enumeration import knapsack_max, local_configs, training_configs, training_defaults
from autopeft.space.space import SearchSpace
from autopeft.train.recipe import TrialRecipe
from autopeft.train.tasks.spec import TaskSpec

#: Cached layer counts kept before the cache is cleared (only float-valued references can fill it).
MAX_CACHE = 200_000

_ABSENT = object()  # a parameter absent from the configuration (inactive), in cache keys


@dataclass(frozen=True)
class _Layer:
    """One searched layer: its index, structure group and the configuration keys its plan reads."""

    index: int
    group: int
    keys: tuple[str, ...]  # configuration keys, in the order of `ParamCounter._refs`


class ParamCounter:
    """Exact trainable counts (adapters + head) of a space's configurations on one model.

    Build it with `for_recipe` (the recipe's model as a `meta` skeleton, its task's label count) or
    directly from a model, which it then owns: it freezes it and adds the prefix attention switch.
    """

    def __init__(self, model: nn.Module, space: SearchSpace, *, arch: ArchitectureMap | None = None,
                 source: str | None = None) -> None:
        self.space = space
        self.source = source
        self._model = model
        self._arch = architecture_for(model, arch)
        layers = model_layers(model, self._arch)
        self.num_layers = len(layers)
        info = apply_plan(model, PeftPlan(num_layers=self.num_layers), arch=self._arch)
        self.base_params = info.base_params
        self.head_params = info.trainable_params  # with an empty plan only the head trains
        self._templates, groups = _group_layers(layers)
        self._refs = _plan_refs(space)
        searched = parse_layer_selector(space.searched_layers, self.num_layers, source=source,
                                        field="searched_layers")
        self.searched_layers: tuple[int, ...] = tuple(searched)
        self._layers = tuple(
            _Layer(i, groups[i], tuple(r if r in space.global_params else f"layer_{i}.{r}" for r in self._refs))
            for i in searched
        )
        self._cache: dict[tuple[Any, ...], int] = {}
        self._bounds: _Bounds | None = None

    @classmethod
    def for_recipe(cls, recipe: TrialRecipe, space: SearchSpace, *, num_labels: int | None = None,
                   source: str | None = None) -> ParamCounter:
        """The recipe's model on the `meta` device (no weights read) with its task's head size."""
        labels = num_labels if num_labels is not None else task_num_labels(recipe.task, recipe.base_dir)
        model = meta_model(recipe, labels)
        arch = role_map_from_dict(recipe.model.role_map) if recipe.model.role_map else None
        return cls(model, space, arch=architecture_for(model, arch), source=source)

    # -- counts -------------------------------------------------------------------------------------
    def count(self, config: Mapping[str, Any]) -> int:
        """Exact trainable parameters of `config` (as `apply_plan` reports them); cached per layer.

        Values the plan reads are checked against their parameter when a layer setting is first seen;
        the rest of the configuration is not validated here (`SearchSpace.compile` does that).
        """
        total = self.head_params
        cache = self._cache
        for layer in self._layers:
            key = (layer.group, *[_freeze(config.get(k, _ABSENT)) for k in layer.keys])
            n = cache.get(key)
            if n is None:
                n = self._count_layer(layer, config, key)
            total += n
        return total

    def share(self, config: Mapping[str, Any]) -> float:
        """Trainable parameters as a share of the base model's (the constraints' and AutoPEFT's measure)."""
        return self.count(config) / self.base_params

    def feasible(self, config: Mapping[str, Any]) -> bool:
        """Whether every constraint of the space allows this configuration: its exact count, and its plan
        where the space asks for plans `peft` can express."""
        return self.allows(self.count(config)) and (not self.space.needs_peft or not self.peft_reasons(config))

    def peft_reasons(self, config: Mapping[str, Any]) -> list[str]:
        """Why Hugging Face `peft` cannot express this configuration's plan on the model; empty when it can.

        The plan is filled from the values the template reads, as `SearchSpace.compile` fills it, without
        compile's checks of every value (twice as fast: the samplers ask this of hundreds of candidates).
        """
        from autopeft.peft.expressible import peft_reasons

        raw = {str(layer.index): methods for layer in self._layers
               if (methods := self.space.layer_methods(self._values(layer, config)))}
        return peft_reasons(PeftPlan.from_selectors(raw, self.num_layers), self._arch)

    def allows(self, trainable_params: int) -> bool:
        """Whether every constraint of the space allows a configuration of this count."""
        share = trainable_params / self.base_params
        return all(c.allows(trainable_params, share) for c in self.space.constraints)

    # -- bounds -------------------------------------------------------------------------------------
    def bounds(self) -> tuple[int, int]:
        """(min, max) trainable parameters over the whole space, constraints ignored.

        Layer by layer: every local configuration is enumerated (all choices, every integer of an int
        range, both ends of a float range), one value only for parameters the plan never reads. If a
        layer has more than `enumeration.MAX_LOCAL_CONFIGS`, int ranges shrink to a grid (`bounds_exact` is False).
        """
        b = self._get_bounds()
        return b.low, b.high

    @property
    def bounds_exact(self) -> bool:
        """False when `bounds` enumerated a grid of some integer ranges instead of every value."""
        return self._get_bounds().exact

    def bound_configs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Valid configurations that attain `bounds()` (min first, then max)."""
        b = self._get_bounds()
        return dict(b.low_config), dict(b.high_config)

    def feasible_bounds(self) -> tuple[int, int | None] | None:
        """(min, max) over the configurations the constraints allow; None if they allow none.

        The constraints are upper limits on the total, so the min is `bounds()`'s when allowed. The max
        is a multiple-choice knapsack over layers, solved exactly with a bitset of reachable totals;
        when that would cost more than `enumeration.MAX_KNAPSACK_WORK`, the max is None (not determined).
        """
        low, high = self.bounds()
        limit = self.max_allowed()
        if limit is None or high <= limit:
            return low, high
        if low > limit:
            return None
        return low, knapsack_max(self._get_bounds().options, limit)

    def max_allowed(self) -> int | None:
        """The largest total every constraint allows; None without constraints."""
        if not self.space.count_limits:
            return None
        limits = []
        for c in self.space.count_limits:
            if c.max_trainable_params is not None:
                limits.append(c.max_trainable_params)
            else:
                n = math.floor((c.max_trainable_share or 0.0) * self.base_params)
                while c.allows(n + 1, (n + 1) / self.base_params):  # agree with `allows`' float division
                    n += 1
                while n >= 0 and not c.allows(n, n / self.base_params):
                    n -= 1
                limits.append(n)
        return min(limits)

    def warm(self) -> None:
        """Count every local layer setting now (as `bounds` does: ~0.1-3 s on MiniLM), so that `count` on
        any configuration without float-valued plan references is a cache hit (~10 us)."""
        self._get_bounds()

    # -- internals ----------------------------------------------------------------------------------
    def _values(self, layer: _Layer, config: Mapping[str, Any]) -> dict[str, Any]:
        """The values the plan template reads in `layer`, by parameter name (unprefixed)."""
        return {r: config[k] for r, k in zip(self._refs, layer.keys, strict=True) if k in config}

    def _count_layer(self, layer: _Layer, config: Mapping[str, Any], key: tuple[Any, ...]) -> int:
        n = self._count_values(layer.index, layer.group, self._values(layer, config))
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[key] = n
        return n

    def _count_values(self, index: int, group: int, values: Mapping[str, Any]) -> int:
        """Adapter parameters in layer `index` for the plan-read `values`, on a copy of its template."""
        specs = self._specs(index, values)
        if not specs:
            return 0
        layer = copy.deepcopy(self._templates[group])
        ctx = LayerContext(model=self._model, index=index, layer=layer, arch=self._arch)
        for spec in sorted(specs, key=lambda s: method(s.method).order):
            method(spec.method).attach(ctx, spec)
        return sum(p.numel() for p in layer.parameters() if p.requires_grad)

    def _specs(self, index: int, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """Layer `index`'s method specs, filled from the plan template as `SearchSpace.compile` does."""
        params = {**self.space.global_params, **self.space.layers}
        for ref, value in values.items():
            if not params[ref].contains(value):
                field = ref if ref in self.space.global_params else f"layer_{index}.{ref}"
                raise ConfigError(f"{value!r} is not {params[ref].describe()}", source=self.source, field=field)
        try:
            methods = self.space.layer_methods(values)
        except KeyError as err:
            ref = str(err.args[0])
            field = ref if ref in self.space.global_params else f"layer_{index}.{ref}"
            raise ConfigError("missing from the configuration, and a plan entry reads it (give that entry a `when`)",
                              source=self.source, field=field) from None
        if not methods:
            return ()
        plan = PeftPlan.from_selectors({index: methods}, self.num_layers, source=self.source)
        return plan.methods(index)

    def _get_bounds(self) -> _Bounds:
        if self._bounds is None:
            self._bounds = self._compute_bounds()
        return self._bounds

    def _compute_bounds(self) -> _Bounds:
        local, exact = local_configs(self.space, self._refs)
        best: _Bounds | None = None
        for training in training_configs(self.space, self._refs):
            candidate = self._bounds_for(training, local, exact)
            best = candidate if best is None else best.merge(candidate)
        assert best is not None
        return best

    def _bounds_for(self, training: dict[str, Any], local: list[dict[str, Any]], exact: bool) -> _Bounds:
        """Bounds with the training values the plan reads fixed to `training`."""
        per_group: dict[int, dict[int, dict[str, Any]]] = {}  # group -> count -> one local config
        options: list[list[int]] = []
        low_config: dict[str, Any] = training_defaults(self.space, training)
        high_config = dict(low_config)
        low = high = self.head_params
        for layer in self._layers:
            if layer.group not in per_group:
                by_count: dict[int, dict[str, Any]] = {}
                for values in local:
                    read = {**training, **{r: values[r] for r in self._refs if r in values}}
                    key = (layer.group, *[_freeze(read.get(r, _ABSENT)) for r in self._refs])
                    n = self._cache.get(key)
                    if n is None:
                        n = self._count_values(layer.index, layer.group, read)
                        self._cache[key] = n
                    by_count.setdefault(n, values)
                per_group[layer.group] = by_count
            by_count = per_group[layer.group]
            lo, hi = min(by_count), max(by_count)
            low, high = low + lo, high + hi
            options.append(sorted(by_count))
            low_config.update({f"layer_{layer.index}.{k}": v for k, v in by_count[lo].items()})
            high_config.update({f"layer_{layer.index}.{k}": v for k, v in by_count[hi].items()})
        return _Bounds(low, high, low_config, high_config, [(self.head_params, options)], exact)


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    low_config: dict[str, Any]
    high_config: dict[str, Any]
    options: list[tuple[int, list[list[int]]]]  # per training setting: head, per-layer distinct counts
    exact: bool

    def merge(self, other: _Bounds) -> _Bounds:
        low = self if self.low <= other.low else other
        high = self if self.high >= other.high else other
        return _Bounds(low.low, high.high, low.low_config, high.high_config, self.options + other.options,
                       self.exact and other.exact)


# --- building the model skeleton ---------------------------------------------------------------------


def task_num_labels(task: TaskSpec, base_dir: Path | None = None) -> int:
    """The head's output size, without reading data where the recipe fixes it (GLUE, demo, `labels`)."""
    from autopeft.train.tasks.glue import GLUE_FORMATS
    from autopeft.train.tasks.loader import load_task

    if task.is_regression:
        return 1
    if task.labels is not None:
        return len(task.labels)
    fmt = GLUE_FORMATS.get("sst2" if task.name == "demo" else task.name)
    if fmt is not None:
        return len(fmt.label_names)
    return load_task(task, base_dir).num_labels  # files / hf without `labels`: read the label values


def meta_model(recipe: TrialRecipe, num_labels: int) -> nn.Module:
    """The recipe's sequence-classification model built from its config on the `meta` device."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from autopeft.train.model import quiet_transformers, resolve_model_path
    from autopeft.train.verbosity import verbose_requested

    quiet_transformers(verbose_requested())
    path = resolve_model_path(recipe.model.name, recipe.base_dir)
    try:
        config = AutoConfig.from_pretrained(path, num_labels=num_labels)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot load the config of model {recipe.model.name!r}: {first}",
                          field="model.name") from None
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return model.to(getattr(torch, recipe.model.dtype))


def _group_layers(layers: nn.ModuleList) -> tuple[list[nn.Module], list[int]]:
    """One template per distinct layer structure, and each layer's group."""
    signatures: dict[tuple[Any, ...], int] = {}
    templates: list[nn.Module] = []
    groups: list[int] = []
    for layer in layers:
        sig = _signature(layer)
        if sig not in signatures:
            signatures[sig] = len(templates)
            templates.append(layer)
        groups.append(signatures[sig])
    return templates, groups


def _signature(layer: nn.Module) -> tuple[Any, ...]:
    modules = tuple((name, type(m).__qualname__) for name, m in layer.named_modules())
    params = tuple((name, tuple(p.shape), p.dtype) for name, p in layer.named_parameters())
    return modules, params


# --- the plan template ------------------------------------------------------------------------------


def _plan_refs(space: SearchSpace) -> tuple[str, ...]:
    """Parameters the plan template reads (`$references` and `when`), in a fixed order."""
    refs: set[str] = set()
    for entry in space.plan:
        refs |= entry.references()
    order = [*space.global_params, *space.layers]
    return tuple(name for name in order if name in refs)


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and len(value) > 1


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a configuration value (lists of roles become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value
