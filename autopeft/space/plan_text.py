"""A plan in one short line (`L0-2 lora r8 qv; L3 prefix 16`), for tables where a YAML block does not fit.

Plans compiled from a search space list every layer on its own (`"3": [...]`); grouping consecutive
layers with the same methods is what makes a front readable. Plain Python (no torch), so `pareto`
and the dashboard stay light. It reads the plan of a `TrialConfig` (`space.config`) as stored, and lives
here, in the lowest torch-free layer, because both the engine (progress) and export (and the CLI) show it;
`autopeft.peft` would import torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autopeft.errors import ConfigError
from autopeft.layer_selectors import parse_layer_selector

#: One letter per role: query, key, value, attention output, feed-forward gate, up, down.
ROLE_LETTERS = {"query": "q", "key": "k", "value": "v", "attn_output": "o", "ff_gate": "g", "ff_up": "u",
                "ff_down": "d"}
#: Roles a method adapts when its entry names none: the specs' defaults (a test checks they agree).
DEFAULT_ROLES = {"lora": ["query", "value"], "dora": ["query", "value"], "ia3": ["key", "value", "ff_down"]}
_UNBOUNDED = 1 << 20  # layer count used to expand explicit selectors when the model's is not known


def method_text(spec: Mapping[str, Any]) -> str:
    """`lora r8 qv`, `ia3 kvd`, `serial 64`, `parallel 16`, `prefix 16` (unknown methods: their name)."""
    method = str(spec.get("method", "?"))
    if method in ("lora", "dora", "ia3"):
        roles = spec.get("roles") or DEFAULT_ROLES[method]
        letters = "".join(ROLE_LETTERS.get(str(r), str(r)) for r in roles)
        rank = f" r{spec['r']}" if "r" in spec else ""
        return f"{method}{rank} {letters}"
    if method in ("serial_adapter", "parallel_adapter"):
        return f"{method.removesuffix('_adapter')} {spec.get('size', '?')}"
    if method == "prefix":
        return f"prefix {spec.get('length', '?')}"
    return method


def _methods(value: Any) -> list[Mapping[str, Any]]:
    items = [value] if isinstance(value, Mapping) else list(value or [])
    return [m for m in items if isinstance(m, Mapping)]


def _span(layers: Sequence[int]) -> str:
    return f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}-{layers[-1]}"


def plan_text(plan: Mapping[Any, Any] | None, num_layers: int | None = None) -> str:
    """The plan (layer selector -> methods) in one line; `head only` when it adapts no layer.

    Without `num_layers`, a plan using `all` is listed selector by selector as written.
    """
    if not plan:
        return "head only"
    per_layer: dict[int, list[str]] = {}
    try:
        for selector, methods in plan.items():
            if num_layers is None and "all" in str(selector):
                raise ConfigError("needs the layer count")
            # A compiled plan names every layer by its index: that common case skips the selector parser
            # (a dashboard writes this line for every one of 10,000 trials).
            layers = ([int(selector)] if isinstance(selector, str) and selector.isdigit() and num_layers is None
                      else parse_layer_selector(selector, num_layers or _UNBOUNDED))
            for layer in layers:
                per_layer.setdefault(layer, []).extend(method_text(m) for m in _methods(methods))
    except ConfigError:
        return "; ".join(f"{'' if str(s) == 'all' else 'L'}{s} {' + '.join(method_text(m) for m in _methods(v))}"
                         for s, v in plan.items())
    groups: list[tuple[list[int], list[str]]] = []
    for layer in sorted(per_layer):
        if not per_layer[layer]:
            continue
        last = groups[-1] if groups else None
        if last is not None and last[0][-1] == layer - 1 and last[1] == per_layer[layer]:
            last[0].append(layer)
        else:
            groups.append(([layer], per_layer[layer]))
    return "; ".join(f"{_span(layers)} {' + '.join(texts)}" for layers, texts in groups) or "head only"
