"""Export of plans and adapter weights to other formats (Hugging Face `peft`)."""

from autopeft.export.peft_format import PeftExport, save_peft_adapter, to_peft_config

__all__ = ["PeftExport", "save_peft_adapter", "to_peft_config"]
