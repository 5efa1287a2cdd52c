"""Property tests: any YAML document given as a search space, a trial recipe, a trial configuration or an
exported bundle (`autopeft train`'s input) either loads or raises autopeft's own error (`AutopeftError`,
one line for the CLI), never another exception.

Documents are arbitrary YAML-able data (nested mappings, lists and scalars, keys steered towards the
schemas' field names so that validation gets deep), mutations of the shipped files, arbitrary text and
arbitrary bytes. A space that loads is also expanded, sampled and compiled, as a study would.
"""

from __future__ import annotations

import atexit
import contextlib
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft.errors import AutopeftError
from autopeft.export.bundle import read_bundle
from autopeft.space.space import SearchSpace, load_space
from autopeft.train.recipe import load_config, load_recipe

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
RECIPES = sorted((ROOT / "trials").glob("*.yaml"))
FOLDER = Path(tempfile.mkdtemp(prefix="autopeft-yaml-props-"))
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Field names of spaces, recipes, configurations and plans: keys drawn from these reach the validators.
FIELDS = ("name", "description", "training", "layers", "searched_layers", "plan", "constraints", "choices", "int",
          "float", "log", "when", "ne", "method", "r", "alpha", "roles", "size", "length", "dropout", "rank",
          "max_trainable_share", "max_trainable_params", "learning_rate", "lr_schedule", "warmup_ratio", "model",
          "task", "fidelity", "unit", "min", "max", "batch_size", "labels", "text_columns", "label_column", "train",
          "metric", "validation_size", "all", "0-2", "3", "query", "value", "lora", "dora", "ia3", "prefix",
          "serial_adapter", "parallel_adapter", "none", "files", "demo", "$rank", "$method", "steps")

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(FIELDS) | st.text(max_size=8))
keys = st.sampled_from(FIELDS) | st.text(max_size=6) | st.integers(min_value=-3, max_value=10) | st.booleans()
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(keys, inner, max_size=5), max_leaves=25)


def _write(data: Any) -> Path:
    path = FOLDER / "doc.yaml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _loads_or_own_error(load: Callable[[Path], Any], data: Any) -> Any:
    try:
        return load(_write(data))
    except AutopeftError:
        return None


def _use_space(space: SearchSpace) -> None:
    """What a study does with a space before any model: expand it, sample a point, compile it."""
    with contextlib.suppress(AutopeftError):
        space.compile(space.sample(6, random.Random(0)), 6)


def _load_space(path: Path) -> SearchSpace:
    space = load_space(path)
    _use_space(space)
    return space


LOADERS: dict[str, Callable[[Path], Any]] = {"space": _load_space, "recipe": load_recipe, "config": load_config,
                                             "bundle": read_bundle}


def _mutate(data: Any, draw: Any, depth: int = 0) -> Any:
    """Replace, drop or add one value somewhere inside `data`."""
    if isinstance(data, dict) and data and depth < 6 and (depth == 0 or draw(st.integers(0, 3)) > 0):
        key = draw(st.sampled_from(sorted(data, key=str)))
        action = draw(st.sampled_from(("descend", "descend", "descend", "drop", "add")))
        if action == "drop":
            return {k: v for k, v in data.items() if k != key}
        if action == "add":
            return {**data, draw(keys): draw(documents)}
        return {**data, key: _mutate(data[key], draw, depth + 1)}
    if isinstance(data, list) and data and depth < 6 and draw(st.integers(0, 3)) > 0:
        i = draw(st.integers(0, len(data) - 1))
        return [*data[:i], _mutate(data[i], draw, depth + 1), *data[i + 1:]]
    return draw(documents)


@st.composite
def mutated(draw: Any, files: list[Path]) -> Any:
    data = yaml.safe_load(draw(st.sampled_from(files)).read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 2))):
        data = _mutate(data, draw)
    return data


@SETTINGS
@given(kind=st.sampled_from(sorted(LOADERS)), data=documents)
def test_any_document_loads_or_raises_our_error(kind: str, data: Any) -> None:
    _loads_or_own_error(LOADERS[kind], data)


@SETTINGS
@given(data=mutated(SPACES))
def test_mutated_shipped_spaces_load_or_raise_our_error(data: Any) -> None:
    _loads_or_own_error(_load_space, data)


@SETTINGS
@given(data=mutated(RECIPES))
def test_mutated_shipped_recipes_load_or_raise_our_error(data: Any) -> None:
    _loads_or_own_error(load_recipe, data)


@SETTINGS
@given(data=st.fixed_dictionaries({"plan": documents}, optional={"learning_rate": scalars, "lr_schedule": scalars,
                                                                 "warmup_ratio": scalars}))
def test_configurations_load_or_raise_our_error(data: Any) -> None:
    _loads_or_own_error(load_config, data)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(LOADERS)), raw=st.text(max_size=40) | st.binary(max_size=40))
def test_any_text_or_bytes_loads_or_raises_our_error(kind: str, raw: str | bytes) -> None:
    _loads_or_own_error(LOADERS[kind], raw)


LAUGHS = "".join(f"{a}: &{a} [{', '.join([f'*{b}'] * 9)}]\n" for b, a in zip("abcdef", "bcdefg", strict=True))
ADVERSARIAL = {
    "deep list": "[" * 1200 + "]" * 1200,  # the YAML parser itself runs out of stack
    "deep mapping": "a: " + "{a: " * 60 + "1" + "}" * 60,
    "alias cycle": "name: x\nlayers: {m: {choices: &a [1, *a]}}\nplan: [{method: lora, r: 2}]\n",
    "billion laughs": "a: &a [x, x, x, x, x, x, x, x, x]\n" + LAUGHS + "name: x\nplan: [*g]\n",
    "python tag": "name: !!python/object/apply:os.system [echo]\n",
}


def test_adversarial_documents_raise_our_error() -> None:
    for kind, load in LOADERS.items():
        for name, text in ADVERSARIAL.items():
            if name == "deep list" and kind != "config":
                continue  # slow (the parser's RecursionError), and read_yaml is shared by the three loaders
            assert _loads_or_own_error(load, text) is None, (kind, name)
