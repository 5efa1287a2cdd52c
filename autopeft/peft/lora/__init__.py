"""LoRA and its DoRA variant: low-rank updates added next to the frozen projection (order 10)."""

from autopeft.peft.lora.config import DoraSpec, LoraSpec
from autopeft.peft.lora.layer import DoraDelta, LoraDelta, set_fused
from autopeft.peft.lora.model import attach
from autopeft.peft.registry import MethodInfo, PeftEquivalent, register

register(MethodInfo(name="lora", spec_type=LoraSpec, attach=attach, order=10, repeatable=True,
                    peft=PeftEquivalent("LORA", "LoRA")))
register(MethodInfo(name="dora", spec_type=DoraSpec, attach=attach, order=10, repeatable=True,
                    peft=PeftEquivalent("LORA", "DoRA", {"use_dora": True})))

__all__ = ["DoraDelta", "DoraSpec", "LoraDelta", "LoraSpec", "attach", "set_fused"]
