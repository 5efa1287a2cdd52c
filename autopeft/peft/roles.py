"""Module roles and the per-architecture maps from roles to module names.

Plans and search spaces speak of roles (attention query, feed-forward down, ...) and layer indices,
never of one model's module names; this file is the one place that knows the names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from torch import nn

from autopeft.errors import UnsupportedArchitectureError


class Role(str, enum.Enum):
    """A linear projection inside a transformer layer, named by what it does."""

    QUERY = "query"
    KEY = "key"
    VALUE = "value"
    ATTN_OUTPUT = "attn_output"
    FF_GATE = "ff_gate"  # only in gated feed-forward blocks (Llama family)
    FF_UP = "ff_up"
    FF_DOWN = "ff_down"

    def __str__(self) -> str:
        return self.value


ATTENTION_ROLES = (Role.QUERY, Role.KEY, Role.VALUE, Role.ATTN_OUTPUT)
FEED_FORWARD_ROLES = (Role.FF_GATE, Role.FF_UP, Role.FF_DOWN)


@dataclass(frozen=True)
class ModuleSlot:
    """Where a role lives inside one layer: a dotted path, and for fused projections
    (GPT-2's `c_attn` holds query, key and value) which equal part of the output it owns."""

    path: str
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class ArchitectureMap:
    """How to find the layers, each layer's attention module and each role's projection.

    `layers` is relative to `model.base_model`; the other paths are relative to one layer.
    """

    layers: str
    attention: str
    roles: dict[Role, ModuleSlot] = field(default_factory=dict)

    def slot(self, role: Role) -> ModuleSlot:
        try:
            return self.roles[role]
        except KeyError:
            have = ", ".join(r.value for r in self.roles)
            raise UnsupportedArchitectureError(
                f"role {role.value!r} does not exist in this architecture; it has: {have}"
            ) from None



_BERT = ArchitectureMap(
    layers="encoder.layer",
    attention="attention.self",
    roles={
        Role.QUERY: ModuleSlot("attention.self.query"),
        Role.KEY: ModuleSlot("attention.self.key"),
        Role.VALUE: ModuleSlot("attention.self.value"),
        Role.ATTN_OUTPUT: ModuleSlot("attention.output.dense"),
        Role.FF_UP: ModuleSlot("intermediate.dense"),
        Role.FF_DOWN: ModuleSlot("output.dense"),
    },
)

_GPT2 = ArchitectureMap(
    layers="h",
    attention="attn",
    roles={
        Role.QUERY: ModuleSlot("attn.c_attn", part=0, parts=3),
        Role.KEY: ModuleSlot("attn.c_attn", part=1, parts=3),
        Role.VALUE: ModuleSlot("attn.c_attn", part=2, parts=3),
        Role.ATTN_OUTPUT: ModuleSlot("attn.c_proj"),
        Role.FF_UP: ModuleSlot("mlp.c_fc"),
        Role.FF_DOWN: ModuleSlot("mlp.c_proj"),
    },
)

_LLAMA = ArchitectureMap(
    layers="layers",
    attention="self_attn",
    roles={
        Role.QUERY: ModuleSlot("self_attn.q_proj"),
        Role.KEY: ModuleSlot("self_attn.k_proj"),
        Role.VALUE: ModuleSlot("self_attn.v_proj"),
        Role.ATTN_OUTPUT: ModuleSlot("self_attn.o_proj"),
        Role.FF_GATE: ModuleSlot("mlp.gate_proj"),
        Role.FF_UP: ModuleSlot("mlp.up_proj"),
        Role.FF_DOWN: ModuleSlot("mlp.down_proj"),
    },
)

#: Built-in maps by `config.model_type`. MiniLM checkpoints are `bert`.
ARCHITECTURES: dict[str, ArchitectureMap] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "gpt2": _GPT2,
    "llama": _LLAMA,
    "qwen2": _LLAMA,
    "mistral": _LLAMA,
}


def architecture_for(model: nn.Module, override: ArchitectureMap | None = None) -> ArchitectureMap:
    """The role map for `model`: `override` if given, else the built-in one for its `model_type`."""
    if override is not None:
        return override
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    supported = ", ".join(sorted(ARCHITECTURES))
    raise UnsupportedArchitectureError(
        f"model_type {model_type!r} has no built-in role map; supported: {supported}. "
        "For another architecture pass a role map in the trial recipe under `model.role_map` "
        "(keys: layers, attention, roles: {query: PATH, key: PATH, ...})"
    )


def role_map_from_dict(raw: dict[str, object]) -> ArchitectureMap:
    """Build an `ArchitectureMap` from a recipe's `role_map` mapping (paths as strings)."""
    roles_raw = raw.get("roles") or {}
    if not isinstance(roles_raw, dict) or not isinstance(raw.get("layers"), str):
        raise UnsupportedArchitectureError(
            "role_map needs `layers` (a dotted path) and `roles` (a mapping of role to dotted path)"
        )
    accepted = ", ".join(r.value for r in Role)
    roles: dict[Role, ModuleSlot] = {}
    for name, path in roles_raw.items():
        try:
            role = Role(name)
        except ValueError:
            raise UnsupportedArchitectureError(
                f"role_map.roles: unknown role {name!r}; accepted: {accepted}"
            ) from None
        roles[role] = ModuleSlot(str(path))
    return ArchitectureMap(layers=str(raw["layers"]), attention=str(raw.get("attention", "")), roles=roles)
