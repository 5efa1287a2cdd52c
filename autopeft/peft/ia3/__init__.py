"""IA3: learned rescaling vectors, applied after the low-rank updates (order 20)."""

from autopeft.peft.ia3.config import IA3Spec
from autopeft.peft.ia3.layer import IA3Vector
from autopeft.peft.ia3.model import attach
from autopeft.peft.registry import MethodInfo, PeftEquivalent, register

register(MethodInfo(name="ia3", spec_type=IA3Spec, attach=attach, order=20, peft=PeftEquivalent("IA3", "IA3")))

__all__ = ["IA3Spec", "IA3Vector", "attach"]
