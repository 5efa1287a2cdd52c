"""Export of plans and adapter weights to other formats (Hugging Face `peft`), and of study trials.

The `peft` names load lazily: `autopeft pareto` and the trial selection read the store without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopeft.export.peft_format import PeftExport, save_peft_adapter, to_peft_config

__all__ = ["PeftExport", "save_peft_adapter", "to_peft_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from autopeft.export import peft_format

        return getattr(peft_format, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
