"""PEFT methods, per-layer plans, and their injection into transformers models.

Importing this package registers every built-in method in `autopeft.peft.registry.METHODS`.
"""

# The methods register first: the plan (imported by inject) builds its method union from the registry.
from autopeft.peft import bottleneck, ia3, lora, prefix  # noqa: F401  (registers the methods)
from autopeft.peft.inject import AdaptedModelInfo, apply_plan, num_layers
from autopeft.peft.plan import MethodSpec, PeftPlan
from autopeft.peft.roles import ARCHITECTURES, ArchitectureMap, Role

__all__ = [
    "ARCHITECTURES",
    "AdaptedModelInfo",
    "ArchitectureMap",
    "MethodSpec",
    "PeftPlan",
    "Role",
    "apply_plan",
    "num_layers",
]
