"""The table of PEFT methods, read by the injector and (later) the exporter.

Each method's package registers itself on import; `autopeft.peft` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopeft.peft.context import LayerContext

AttachFn = Callable[[LayerContext, Any], None]


@dataclass(frozen=True)
class MethodInfo:
    """A method's name, its spec type and how it attaches to one layer."""

    name: str
    spec_type: type
    attach: AttachFn
    #: Order in which methods attach within a layer (low first): low-rank updates sit next to the base
    #: projection, scalings after them, adapters on the block output last.
    order: int


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
