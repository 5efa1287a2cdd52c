"""Whether the user asked for verbose logs (`autopeft -v`), readable in any process without imports."""

from __future__ import annotations

import os
import warnings

#: Set by the CLI; worker processes inherit it, so a trial in a pool logs as its parent asked.
VERBOSE_ENV = "AUTOPEFT_VERBOSE"
#: Libraries whose deprecation notices (`FutureWarning`) are for their callers' authors, not for our users:
#: transformers warns about renames that peft calls (`is_gradient_checkpointing`) on every export and train.
QUIET_LIBRARIES = r"(transformers|peft|huggingface_hub|accelerate)(\..*)?"


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_library_warnings(verbose: bool | None = None) -> None:
    """Hide the libraries' `FutureWarning`s unless -v (a study's workers call this too: they start afresh)."""
    if verbose if verbose is not None else verbose_requested():
        return
    warnings.filterwarnings("ignore", category=FutureWarning, module=QUIET_LIBRARIES)
