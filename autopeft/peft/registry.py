"""The table of PEFT methods: the one list the plan's method union, the injector and the exporter read.

Each method's package registers itself on import; `autopeft.peft` imports them all, before the plan
module builds its union from this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autopeft.peft.context import LayerContext
from autopeft.peft.spec import MethodSpecBase

AttachFn = Callable[[LayerContext, Any], None]


@dataclass(frozen=True)
class PeftEquivalent:
    """How Hugging Face `peft` expresses a method: its tuner, the name in messages, and the options it sets."""

    peft_type: str  # peft's `PeftType` name: LORA, IA3, PREFIX_TUNING
    label: str  # "LoRA", "prefix tuning"
    options: Mapping[str, Any] = field(default_factory=dict)  # tuner options that select it (DoRA: use_dora)


@dataclass(frozen=True)
class MethodInfo:
    """A method's name, its spec type, how it attaches to one layer, and how `peft` expresses it."""

    name: str
    spec_type: type[MethodSpecBase]
    attach: AttachFn
    #: Order in which methods attach within a layer (low first): low-rank updates sit next to the base
    #: projection, scalings after them, adapters on the block output last.
    order: int
    #: May appear in several entries of one layer (on different projections); else at most once per layer.
    repeatable: bool = False
    #: None: `peft` has no equivalent, the exporter writes autopeft's own format.
    peft: PeftEquivalent | None = None


METHODS: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> None:
    if info.name in METHODS and METHODS[info.name] != info:
        raise ValueError(f"method {info.name!r} is registered twice")
    METHODS[info.name] = info


def method(name: str) -> MethodInfo:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}") from None


def registered() -> list[MethodInfo]:
    """Every registered method, in attach order (ties: registration order)."""
    if not METHODS:
        raise RuntimeError("no PEFT method is registered: import autopeft.peft, which registers them")
    return sorted(METHODS.values(), key=lambda info: info.order)
