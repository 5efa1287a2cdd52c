"""The demo task shipped in the package: 1,000 short remarks on films, restaurants, gadgets and trips,
labelled negative (0) or positive (1); sst2's file format (`data/demo_train.tsv`, `data/demo_dev.tsv`).

The words alone do not give the label away: half the remarks turn on a negation ("was not
impressive", "was far from dull"), a contrast ("the soup was cold, but the service was superb": the
clause after *but* decides) or an expectation met or missed ("I expected the plot to be clever, but it
was not"). Every remark comes with a twin that flips the label by changing one or two words, and the
twins sit together in train or in dev. A classifier on the frozen sentence encoder gets the plain
remarks and little else; adapters inside the encoder learn the composition, the more of them the
better, which is what the quickstart study is meant to show.

The files are written by `generate_demo` from templates with a seeded generator (`python -m
autopeft.train.tasks.demo` rewrites them; a test checks they are what it writes).
"""

from __future__ import annotations

import random
import sys
from importlib.resources import as_file, files
from pathlib import Path

from autopeft.train.tasks.glue import GLUE_FORMATS, read_glue_file
from autopeft.train.tasks.types import Splits

DEMO_FORMAT = GLUE_FORMATS["sst2"]
DEMO_SEED = 2026
DEMO_PAIRS = 500  # 1,000 remarks
DEMO_DEV_PAIRS = 100  # 200 of them in dev

_SUBJECTS = {
    "film": ["the plot", "the acting", "the soundtrack", "the ending", "the script", "the dialogue",
             "the lead actor", "the camera work", "the pacing", "the sequel"],
    "food": ["the soup", "the service", "the pasta", "the dessert", "the coffee", "the steak",
             "the waiter", "the curry", "the bread", "the wine list"],
    "gadget": ["the battery", "the screen", "the keyboard", "the charger", "the camera", "the speaker",
               "the app", "the headphones", "the printer", "the laptop"],
    "trip": ["the hotel room", "the flight", "the beach", "the tour", "the staff", "the view",
             "the breakfast", "the guide", "the train ride", "the pool"],
}
_GOOD = ["good", "great", "excellent", "wonderful", "delightful", "superb", "lovely", "impressive",
         "charming", "brilliant", "pleasant", "fantastic", "clever", "solid", "enjoyable", "memorable"]
_BAD = ["bad", "awful", "terrible", "dreadful", "disappointing", "poor", "boring", "mediocre", "weak",
        "annoying", "dull", "sloppy", "bland", "forgettable", "clumsy", "tedious"]
_NOT = ["not", "never", "far from", "hardly", "anything but", "not at all"]
_REALLY = ["", "really ", "truly ", "quite ", "very ", "rather "]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _pair(rng: random.Random) -> list[tuple[str, int]]:
    """Two remarks on the same subject with opposite labels (a minimal pair)."""
    domain = rng.choice(sorted(_SUBJECTS))
    s1, s2 = rng.sample(_SUBJECTS[domain], 2)
    good, bad = rng.choice(_GOOD), rng.choice(_BAD)
    good2, bad2 = rng.choice(_GOOD), rng.choice(_BAD)
    really = rng.choice(_REALLY)
    neg = rng.choice(_NOT)
    kind = rng.choice(["plain", "plain", "negation", "negation", "contrast", "although", "expected", "not_but"])
    if kind == "plain":  # the adjective decides
        return [(f"{_cap(s1)} was {really}{good}.", 1), (f"{_cap(s1)} was {really}{bad}.", 0)]
    if kind == "negation":  # a negation flips the adjective
        adj, label = (good, 0) if rng.random() < 0.5 else (bad, 1)
        return [(f"{_cap(s1)} was {neg} {adj}.", label), (f"{_cap(s1)} was {really}{adj}.", 1 - label)]
    if kind == "contrast":  # the clause after "but" decides; the twin swaps the clauses
        return [(f"{_cap(s1)} was {bad}, but {s2} was {good2}.", 1),
                (f"{_cap(s2)} was {good2}, but {s1} was {bad}.", 0)]
    if kind == "although":  # the main clause decides, not the one under "although"
        return [(f"Although {s1} was {bad}, {s2} was {good2}.", 1),
                (f"Although {s2} was {good2}, {s1} was {bad}.", 0)]
    if kind == "expected":  # an expectation met or missed
        adj, label = (good, 1) if rng.random() < 0.5 else (bad, 0)
        return [(f"I expected {s1} to be {adj}, and it was.", label),
                (f"I expected {s1} to be {adj}, but it was not.", 1 - label)]
    # "not X but Y": the adjective after "but" decides
    return [(f"{_cap(s1)} was not {bad2} but {good}.", 1), (f"{_cap(s1)} was not {good2} but {bad}.", 0)]


def demo_pairs(seed: int = DEMO_SEED) -> list[list[tuple[str, int]]]:
    """`DEMO_PAIRS` minimal pairs of (sentence, label), no sentence twice; the same for the same seed."""
    return _draw_pairs(random.Random(seed))


def _draw_pairs(rng: random.Random) -> list[list[tuple[str, int]]]:
    pairs: list[list[tuple[str, int]]] = []
    seen: set[str] = set()
    while len(pairs) < DEMO_PAIRS:
        pair = _pair(rng)
        if any(text in seen for text, _ in pair):
            continue
        seen.update(text for text, _ in pair)
        pairs.append(pair)
    return pairs


def generate_demo(seed: int = DEMO_SEED) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The demo's train and dev rows (sentence, label): the pairs of `demo_pairs`, the last
    `DEMO_DEV_PAIRS` of them in dev, each split shuffled."""
    rng = random.Random(seed)
    pairs = _draw_pairs(rng)
    train = [row for pair in pairs[:-DEMO_DEV_PAIRS] for row in pair]
    dev = [row for pair in pairs[-DEMO_DEV_PAIRS:] for row in pair]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def write_demo(folder: Path, seed: int = DEMO_SEED) -> None:
    """Write `demo_train.tsv` and `demo_dev.tsv` (sst2's layout: a header, sentence TAB label)."""
    for name, rows in zip(("demo_train.tsv", "demo_dev.tsv"), generate_demo(seed), strict=True):
        lines = ["sentence\tlabel", *(f"{text}\t{label}" for text, label in rows)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_demo() -> Splits:
    data = files("autopeft.train.tasks").joinpath("data")
    with as_file(data.joinpath("demo_train.tsv")) as train_path:
        train = read_glue_file(train_path, DEMO_FORMAT)
    with as_file(data.joinpath("demo_dev.tsv")) as dev_path:
        dev = read_glue_file(dev_path, DEMO_FORMAT)
    return Splits(train=train, dev=dev, label_names=DEMO_FORMAT.label_names)


if __name__ == "__main__":  # rewrite the packaged files: python -m autopeft.train.tasks.demo [FOLDER]
    write_demo(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
