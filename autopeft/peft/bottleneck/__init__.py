"""Bottleneck adapters: serial (Houlsby / Pfeiffer) and parallel (He et al., 2022)."""

from autopeft.peft.bottleneck.config import ParallelAdapterSpec, SerialAdapterSpec
from autopeft.peft.bottleneck.layer import BottleneckAdapter, ParallelAdapter, SerialAdapter
from autopeft.peft.bottleneck.model import attach_parallel, attach_serial
from autopeft.peft.registry import MethodInfo, register

register(MethodInfo(name="parallel_adapter", spec_type=ParallelAdapterSpec, attach=attach_parallel, order=30))
register(MethodInfo(name="serial_adapter", spec_type=SerialAdapterSpec, attach=attach_serial, order=40))

__all__ = [
    "BottleneckAdapter",
    "ParallelAdapter",
    "ParallelAdapterSpec",
    "SerialAdapter",
    "SerialAdapterSpec",
    "attach_parallel",
    "attach_serial",
]
