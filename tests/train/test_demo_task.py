"""The packaged demo task has what the quickstart relies on: the files are what the seeded generator
writes, 1,000 distinct remarks in balanced minimal pairs, twins in the same split, and a good share that
turns on composition (negation, contrast, expectation) rather than on the adjective alone."""

from __future__ import annotations

from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from autopeft.train.tasks import load_task
from autopeft.train.tasks.demo import DEMO_DEV_PAIRS, DEMO_PAIRS, demo_pairs, generate_demo, write_demo
from autopeft.train.tasks.spec import TaskSpec

DATA = files("autopeft.train.tasks").joinpath("data")


def test_the_shipped_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    write_demo(tmp_path)
    for name in ("demo_train.tsv", "demo_dev.tsv"):
        assert (tmp_path / name).read_bytes() == DATA.joinpath(name).read_bytes(), f"regenerate {name}"
    assert generate_demo() == generate_demo()  # seeded: the same rows every time
    assert generate_demo(seed=1) != generate_demo()


def test_sizes_balance_and_twins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, dev = generate_demo()
    assert len(train) == 2 * (DEMO_PAIRS - DEMO_DEV_PAIRS) == 800 and len(dev) == 2 * DEMO_DEV_PAIRS == 200
    for rows in (train, dev):
        assert Counter(label for _, label in rows) == {0: len(rows) // 2, 1: len(rows) // 2}
    texts = [text for text, _ in train + dev]
    assert len(set(texts)) == len(texts)  # no duplicates, so nothing leaks from train into dev
    split = {text: "train" for text, _ in train} | {text: "dev" for text, _ in dev}
    for (a, label_a), (b, label_b) in demo_pairs():
        assert {label_a, label_b} == {0, 1} and split[a] == split[b]  # twins: opposite labels, one split

    monkeypatch.chdir(tmp_path)
    task = load_task(TaskSpec(name="demo", validation_size=0.2))
    assert (len(task.train), len(task.validation), len(task.dev)) == (640, 160, 200)
    assert task.label_names == ("negative", "positive") and task.metric == "accuracy"


def test_most_remarks_need_more_than_the_adjective() -> None:
    train, dev = generate_demo()
    kinds = Counter(_kind(text) for text, _ in train + dev)
    assert kinds["plain"] < 0.4 * (len(train) + len(dev))  # what a classifier on the frozen encoder gets
    assert all(kinds[k] > 50 for k in ("negation", "contrast", "expectation", "not_but")), kinds


def _kind(text: str) -> str:
    if text.startswith("I expected"):
        return "expectation"
    if " was not " in text and " but " in text:
        return "not_but"
    if "," in text:
        return "contrast"
    if any(f" was {neg} " in text for neg in ("not", "never", "far from", "hardly", "anything but")):
        return "negation"
    return "plain"
