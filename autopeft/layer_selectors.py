"""Layer selectors (`all`, `3`, `0-2`, `0,2,4`) as plans and search spaces write them.

Kept apart from `autopeft.peft` (which imports torch) so that search spaces, and the samplers that
expand them, stay plain Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autopeft.errors import ConfigError


def parse_layer_selector(
    selector: Any, num_layers: int, *, source: str | None = None, field: str = "plan"
) -> list[int]:
    """`all`, an index, `a-b` (inclusive), or a comma list of those, to sorted layer indices."""
    accepted = f"'all', an index 0-{num_layers - 1}, a range like '0-2', or a comma list"
    if isinstance(selector, int) and not isinstance(selector, bool):
        parts: Iterable[str] = [str(selector)]
    elif isinstance(selector, str):
        parts = [p.strip() for p in selector.split(",")]
    else:
        raise ConfigError(f"layer selector {selector!r} is not valid; accepted: {accepted}",
                          source=source, field=field)
    indices: set[int] = set()
    for part in parts:
        try:
            if part == "all":
                indices.update(range(num_layers))
            elif "-" in part.lstrip("-"):
                lo, hi = (int(p) for p in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                indices.update(range(lo, hi + 1))
            else:
                indices.add(int(part))
        except ValueError:
            raise ConfigError(f"layer selector {part!r} is not valid; accepted: {accepted}",
                              source=source, field=field) from None
    bad = sorted(i for i in indices if not 0 <= i < num_layers)
    if bad:
        raise ConfigError(
            f"layer {bad[0]} is out of range; the model has layers 0-{num_layers - 1}",
            source=source, field=field,
        )
    return sorted(indices)
