"""The package layers of DESIGN.md, checked on every import of autopeft (module level, in functions, and
under TYPE_CHECKING alike: a lazy import is still a dependency).

Layers, top to bottom: `cli` over `dashboard`, `export` and `engine`; `dashboard` (the Streamlit app,
which reads and exports) over `export` and `engine`; `export` over `engine`, `store`, `peft`,
`train`; `engine` over `search`, `store`, `train`; `search` over `space`; `train` over `peft` and
`space`; `store`, `peft` and `space` import no other package. The top-level modules (`errors.py`,
`yamlio.py`, `layer_selectors.py`, `status.py`, ...) are the bottom layer: anyone may import them and
they import no package. A package may import anything below the packages it sits over. Two edges are
not in DESIGN.md's sentence: `search` over `space` (the samplers encode the space; DESIGN.md does not
place `search`), and `export` over `engine` (export reads a study through the engine's study
definition, front and checkpoint paths). A type two layers share lives in the lower one.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "autopeft"
BASE = "<top-level modules>"

#: Which packages each package sits directly over (the allowed table; its closure is what may be imported).
OVER: dict[str, set[str]] = {
    "cli": {"dashboard", "export", "engine"},
    "dashboard": {"export", "engine"},
    "export": {"engine", "store", "peft", "train"},
    "engine": {"search", "store", "train"},
    "search": {"space"},
    "train": {"peft", "space"},
    "store": set(),
    "peft": set(),
    "space": set(),
}


def _below(package: str) -> set[str]:
    """Every package `package` may import: the closure of `OVER`, plus the top-level modules."""
    seen: set[str] = set()
    todo = list(OVER[package])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(OVER[name])
    return seen | {BASE}


def _layer(parts: list[str]) -> str:
    """The package that `autopeft.<parts...>` belongs to, or BASE for a top-level module."""
    if parts and (PACKAGE / parts[0]).is_dir():
        return parts[0]
    return BASE


def _imports(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, module path under autopeft) of every autopeft import in one file, relative ones resolved."""
    module = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module[:-1]  # `from . import x` in a/b.py and in a/__init__.py both resolve against a/
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "autopeft":
                    yield node.lineno, parts[1:]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "autopeft":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                yield node.lineno, target
            else:  # `from autopeft import errors, engine`: each name is a module or package
                for alias in node.names:
                    yield node.lineno, [alias.name]


def _edges() -> dict[tuple[str, str], list[str]]:
    """Package-level import edges, each with where it happens (`file:line`)."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _layer(list(path.relative_to(PACKAGE).parts[:-1]))
        for line, target in _imports(path):
            dest = _layer(target)
            if dest != source:
                edges.setdefault((source, dest), []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return edges


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle in the package graph (as a path that returns to its start), or None."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(OVER), "place each package of autopeft/ in OVER (and in DESIGN.md's layers)"


def test_the_allowed_table_has_no_cycle() -> None:
    assert _cycle({(a, b) for a, over in OVER.items() for b in over}) is None


def test_no_import_cycle_between_packages() -> None:
    edges = _edges()
    cycle = _cycle(set(edges))
    if cycle:
        where = {f"{a} -> {b}": edges[a, b][:3] for a, b in itertools.pairwise(cycle)}
        raise AssertionError(f"package cycle {' -> '.join(cycle)}: {where}")


def test_every_import_goes_down_the_layers() -> None:
    wrong = {f"{a} -> {b}": places for (a, b), places in _edges().items()
             if b not in (_below(a) if a != BASE else set())}
    assert not wrong, f"imports against the layers (tests/test_layering.py docstring): {wrong}"


def test_the_checker_sees_lazy_imports() -> None:
    """The parser finds imports made inside functions, not only at module level."""
    source = PACKAGE / "export" / "final.py"
    found = {tuple(t) for _, t in _imports(source)}
    assert ("export", "peft_format") in found  # imported inside train_bundle
    assert ("train", "job") in found
