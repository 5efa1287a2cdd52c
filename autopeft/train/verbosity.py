"""Whether the user asked for verbose logs (`autopeft -v`), readable in any process without imports."""

from __future__ import annotations

import os

#: Set by the CLI; worker processes inherit it, so a trial in a pool logs as its parent asked.
VERBOSE_ENV = "AUTOPEFT_VERBOSE"


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"
