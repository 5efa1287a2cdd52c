"""`LayerContext`: what a method sees of one transformer layer while it attaches itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from autopeft.errors import UnsupportedArchitectureError
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.roles import ArchitectureMap, Role


def get_submodule(root: nn.Module, path: str, *, what: str) -> nn.Module:
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise UnsupportedArchitectureError(
            f"{what}: no module at {path!r} in {type(root).__name__}; check the role map"
        ) from None


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


@dataclass
class LayerContext:
    """One layer of the model being adapted, with helpers to reach its projections by role."""

    model: nn.Module
    index: int
    layer: nn.Module
    arch: ArchitectureMap
    _wrapped: dict[str, AdaptedLinear] = field(default_factory=dict)

    @property
    def config(self) -> object:
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)  # type: ignore[attr-defined]

    @property
    def num_heads(self) -> int:
        return int(self.config.num_attention_heads)  # type: ignore[attr-defined]

    @property
    def num_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.num_heads)

    @property
    def head_dim(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.hidden_size // self.num_heads)

    def linear(self, role: Role) -> tuple[AdaptedLinear, slice]:
        """The `AdaptedLinear` holding `role` (wrapping the base projection on first use), and the
        slice of its output that belongs to the role (the whole output unless the projection is fused)."""
        slot = self.arch.slot(role)
        wrapped = self._wrapped.get(slot.path)
        if wrapped is None:
            base = get_submodule(self.layer, slot.path, what=f"layer {self.index} role {role.value}")
            wrapped = base if isinstance(base, AdaptedLinear) else AdaptedLinear(base)
            set_submodule(self.layer, slot.path, wrapped)
            self._wrapped[slot.path] = wrapped
        width = wrapped.out_features // slot.parts
        return wrapped, slice(slot.part * width, (slot.part + 1) * width)

    def attention(self) -> nn.Module:
        """The module that calls the attention function (prefix tuning attaches here)."""
        return get_submodule(self.layer, self.arch.attention, what=f"layer {self.index} attention")
