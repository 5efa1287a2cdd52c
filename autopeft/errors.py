"""The errors autopeft raises on purpose.

Every error a user can cause (a bad file, an unknown name, a missing column) is an `AutopeftError`;
the CLI turns those into one line on stderr and exit code 2, and nothing else prints tracebacks.
Subclasses also inherit the builtin a caller would expect, so `except ValueError` keeps working.
"""

from __future__ import annotations


class AutopeftError(Exception):
    """Root of every error autopeft raises on purpose."""


class ConfigError(AutopeftError, ValueError):
    """A configuration, plan, recipe or search-space file does not fit its schema.

    The message names the file (when there is one), the field path and the accepted values.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        parts = [p for p in (source, field) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.message = message  # without the prefix, so a caller can re-attribute it to another file or field
        self.source = source
        self.field = field


class UnsupportedArchitectureError(ConfigError):
    """The model's architecture has no built-in role map and none was given."""


class DataError(AutopeftError, ValueError):
    """Task data is missing, unreadable, or has a missing column or an unknown label."""


class TrialFailedError(AutopeftError, RuntimeError):
    """A trial could not finish (non-finite loss, out of memory, ...); recorded, never fatal to a study."""


def describe_exception(err: BaseException) -> str:
    """`Type: first line of the message`, for a failed trial's `error` (one line, as the store keeps it)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
