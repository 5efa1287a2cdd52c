"""Whether Hugging Face `peft` can express a plan, and why not: the structural check, without `peft` or weights.

It lives here, below both `export` (which writes the `adapter_config.json` of an expressible plan) and
`train` (whose parameter counter tells the samplers which configurations a space's `peft_expressible`
constraint allows), so that both ask one check. What depends on the installed `peft` itself (a version
that cannot run prefix tuning) stays in the exporter.

Expressible: all LoRA or all DoRA (one dropout; a fused projection gets all its roles from one entry),
all IA3 (likewise), or one prefix length in every layer without reparametrisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopeft.peft.ia3.config import IA3Spec
from autopeft.peft.lora.config import LoraSpec
from autopeft.peft.plan import PeftPlan
from autopeft.peft.prefix.config import PrefixSpec
from autopeft.peft.registry import METHODS, PeftEquivalent
from autopeft.peft.roles import ArchitectureMap, Role

#: Methods that `peft` has no equivalent for (the registry says so).
NO_PEFT_EQUIVALENT = frozenset(name for name, info in METHODS.items() if info.peft is None)


@dataclass(frozen=True)
class Target:
    """One module `peft` adapts: its path (as `target_modules` names it) and the layer and roles behind it."""

    path: str
    layer: int
    roles: tuple[Role, ...]  # in fused-part order
    spec: Any


def peft_equivalent(name: str) -> PeftEquivalent:
    """How `peft` expresses method `name` (ValueError for a method it has no equivalent of)."""
    equivalent = METHODS[name].peft
    if equivalent is None:
        raise ValueError(f"{name} has no peft equivalent")
    return equivalent


def plan_family(plan: PeftPlan) -> tuple[str | None, list[str]]:
    """The one method the plan uses (as the registry names it), or the reasons one `peft` adapter cannot
    hold the plan: methods without an equivalent, no adapted layer, several methods."""
    reasons: list[str] = []
    for layer in plan.adapted_layers:
        for spec in plan.methods(layer):
            if spec.method in NO_PEFT_EQUIVALENT:
                reasons.append(f"layer {layer}: {spec.method} has no peft equivalent")
    families = sorted({s.method for specs in plan.layers.values() for s in specs} - NO_PEFT_EQUIVALENT)
    if not plan.adapted_layers:
        reasons.append("the plan adapts no layer")
    if len(families) > 1:
        equivalents = [peft_equivalent(f) for f in families]
        names = " and ".join(e.label for e in equivalents)
        options = sorted({o for e in equivalents for o in e.options})
        one_tuner = len({e.peft_type for e in equivalents}) == 1
        why = f"{', '.join(options)} applies to every module" if one_tuner and options else \
            "a peft adapter holds one method"
        reasons.append(f"mixes {names}: {why}")
    if reasons or not families:
        return None, reasons
    return families[0], []


def plan_targets(plan: PeftPlan, arch: ArchitectureMap, layers_path: str, what: str) -> tuple[list[Target], list[str]]:
    """One target per adapted module path; a fused projection must carry every part, from one spec."""
    by_path: dict[str, list[tuple[Role, Any, int, int]]] = {}
    for layer in plan.adapted_layers:
        for spec in plan.methods(layer):
            if not isinstance(spec, LoraSpec | IA3Spec):  # DoraSpec is a LoraSpec
                continue
            for role in spec.roles:
                slot = arch.slot(role)
                path = f"{layers_path}.{layer}.{slot.path}"
                by_path.setdefault(path, []).append((role, spec, slot.part, slot.parts))
    targets: list[Target] = []
    reasons: list[str] = []
    for path, entries in by_path.items():
        layer = int(path[len(layers_path) + 1:].split(".", 1)[0])
        entries.sort(key=lambda e: e[2])
        parts = entries[0][3]
        specs = {id(e[1]) for e in entries}
        if parts > 1 and (len(entries) != parts or len(specs) != 1):
            roles = ", ".join(e[0].value for e in entries)
            reasons.append(f"layer {layer}: {what} on part of the fused projection {path.rsplit('.', 2)[-2]}."
                           f"{path.rsplit('.', 1)[-1]} ({roles}); peft adapts the whole projection, so it needs "
                           "all its roles from one method entry")
            continue
        targets.append(Target(path, layer, tuple(e[0] for e in entries), entries[0][1]))
    return targets, reasons


def _lora_reasons(plan: PeftPlan, arch: ArchitectureMap, layers_path: str, what: str) -> list[str]:
    targets, reasons = plan_targets(plan, arch, layers_path, what)
    dropouts = sorted({t.spec.dropout for t in targets})
    if len(dropouts) > 1:
        reasons.append(f"{what} dropout differs between modules ({', '.join(map(str, dropouts))}); "
                       "peft has one lora_dropout")
    return reasons


def _ia3_reasons(plan: PeftPlan, arch: ArchitectureMap, layers_path: str, what: str) -> list[str]:
    return plan_targets(plan, arch, layers_path, what)[1]


def _prefix_reasons(plan: PeftPlan, arch: ArchitectureMap, layers_path: str, what: str) -> list[str]:
    specs = prefix_specs(plan)
    reasons: list[str] = []
    missing = [i for i in range(plan.num_layers) if i not in specs]
    if missing:
        reasons.append(f"prefix in only some layers (none in {', '.join(map(str, missing))}); "
                       "peft's prefix tuning covers every layer")
    lengths = sorted({s.length for s in specs.values()})
    if len(lengths) > 1:
        reasons.append(f"prefix lengths differ between layers ({', '.join(map(str, lengths))}); "
                       "peft has one num_virtual_tokens")
    reparam = sorted(i for i, s in specs.items() if s.reparam)
    if reparam:
        reasons.append(f"layer {reparam[0]}: reparametrised prefix; peft's prefix_projection is one MLP shared "
                       "by all layers")
    return reasons


def prefix_specs(plan: PeftPlan) -> dict[int, PrefixSpec]:
    """Each layer's prefix, by layer index (layers without one left out)."""
    return {i: s for i in range(plan.num_layers) for s in plan.methods(i) if isinstance(s, PrefixSpec)}


#: `peft`'s tuner (`PeftEquivalent.peft_type`) -> what keeps a plan of that one method out of it.
_CHECKS: dict[str, Callable[[PeftPlan, ArchitectureMap, str, str], list[str]]] = {
    "LORA": _lora_reasons, "IA3": _ia3_reasons, "PREFIX_TUNING": _prefix_reasons,
}


def peft_reasons(plan: PeftPlan, arch: ArchitectureMap, *, layers_path: str | None = None) -> list[str]:
    """Why `peft` cannot express `plan` on a model with role map `arch`; empty when it can.

    `layers_path` is the dotted path of the model's layer list, for the module paths in messages
    (default: the role map's, relative to the backbone).
    """
    family, reasons = plan_family(plan)
    if family is None:
        return reasons
    equivalent = peft_equivalent(family)
    return _CHECKS[equivalent.peft_type](plan, arch, layers_path or arch.layers, equivalent.label)
