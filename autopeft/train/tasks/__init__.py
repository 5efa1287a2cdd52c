"""Task data for the trial job: the `task:` recipe section, loading, validation slice, tokenisation.

Nothing here imports torch; `autopeft.train.batching` turns encoded splits into tensors.
"""

from autopeft.train.tasks.encode import EncodedSplit, encode
from autopeft.train.tasks.loader import load_task, split_validation
from autopeft.train.tasks.spec import GLUE_NAMES, TaskSpec
from autopeft.train.tasks.types import Example, TaskData

__all__ = [
    "GLUE_NAMES",
    "EncodedSplit",
    "Example",
    "TaskData",
    "TaskSpec",
    "encode",
    "load_task",
    "split_validation",
]
