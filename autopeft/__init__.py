"""autopeft: search parameter-efficient fine-tuning configurations for a model and a task."""

from autopeft.errors import (
    AutopeftError,
    ConfigError,
    DataError,
    TrialFailedError,
    UnsupportedArchitectureError,
)

__version__ = "0.1.0"

__all__ = [
    "AutopeftError",
    "ConfigError",
    "DataError",
    "TrialFailedError",
    "UnsupportedArchitectureError",
    "__version__",
]
