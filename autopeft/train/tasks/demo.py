"""The demo task shipped in the package: 400 short product, film, restaurant and travel remarks,
written for this project, labelled negative (0) or positive (1); sst2's file format.

Positive and negative remarks come in pairs on the same subject, so a model has to learn the
sentiment, not the topic; each pair sits wholly in train or wholly in dev.
"""

from __future__ import annotations

from importlib.resources import as_file, files

from autopeft.train.tasks.glue import GLUE_FORMATS, read_glue_file
from autopeft.train.tasks.types import Splits

DEMO_FORMAT = GLUE_FORMATS["sst2"]


def load_demo() -> Splits:
    data = files("autopeft.train.tasks").joinpath("data")
    with as_file(data.joinpath("demo_train.tsv")) as train_path:
        train = read_glue_file(train_path, DEMO_FORMAT)
    with as_file(data.joinpath("demo_dev.tsv")) as dev_path:
        dev = read_glue_file(dev_path, DEMO_FORMAT)
    return Splits(train=train, dev=dev, label_names=DEMO_FORMAT.label_names)
