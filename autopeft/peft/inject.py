"""Apply a `PeftPlan` to a transformers model: freeze the base, attach each method, train the head."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from autopeft.errors import ConfigError
from autopeft.peft.context import LayerContext, get_submodule
from autopeft.peft.plan import PeftPlan
from autopeft.peft.registry import method
from autopeft.peft.roles import ArchitectureMap, architecture_for

#: Names of sequence-classification heads in transformers (`peft` trains the same ones by default).
HEAD_NAMES = ("classifier", "score")


@dataclass(frozen=True)
class AdaptedModelInfo:
    """What injection did: exact parameter counts (adapters + head trainable, base frozen)."""

    trainable_params: int
    base_params: int
    head_params: int

    @property
    def trainable_share(self) -> float:
        """Trainable parameters as a share of the base model's parameters (AutoPEFT's '% params')."""
        return self.trainable_params / self.base_params if self.base_params else 0.0


def model_layers(model: nn.Module, arch: ArchitectureMap) -> nn.ModuleList:
    base = getattr(model, "base_model", model)
    layers = get_submodule(base, arch.layers, what="layers")
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"role map `layers` ({arch.layers!r}) must point at a ModuleList")
    return layers


def num_layers(model: nn.Module, arch: ArchitectureMap | None = None) -> int:
    return len(model_layers(model, architecture_for(model, arch)))


def apply_plan(model: nn.Module, plan: PeftPlan, *, arch: ArchitectureMap | None = None) -> AdaptedModelInfo:
    """Freeze `model`, attach every method of `plan` in place, unfreeze the classification head.

    Works on the `meta` device too, which is how a configuration's exact trainable count is known
    before it trains.
    """
    arch = architecture_for(model, arch)
    layers = model_layers(model, arch)
    if plan.num_layers != len(layers):
        raise ConfigError(
            f"plan was made for {plan.num_layers} layers but the model has {len(layers)}", field="plan"
        )
    base_params = sum(p.numel() for p in model.parameters())
    for param in model.parameters():
        param.requires_grad_(False)

    for index in plan.adapted_layers:
        ctx = LayerContext(model=model, index=index, layer=layers[index], arch=arch)
        for spec in sorted(plan.methods(index), key=lambda s: method(s.method).order):
            method(spec.method).attach(ctx, spec)

    head_params = 0
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            for param in head.parameters():
                param.requires_grad_(True)
                head_params += param.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return AdaptedModelInfo(trainable_params=trainable, base_params=base_params, head_params=head_params)
