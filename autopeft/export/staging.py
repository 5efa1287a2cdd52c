"""Write a folder's outputs into a temporary sibling, and move them in only when all of them are written.

An export or a final training that fails half-way (an error, Ctrl-C) leaves the output folder as it
was. A folder that already holds other files is only touched when it holds a previous output of the
same kind (`marker`): then exactly the entries we own are replaced, and the user's other files stay.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from autopeft.errors import ConfigError


def check_target(out: Path, *, marker: str, field: str = "out") -> None:
    """Refuse a non-empty folder that is not a previous output (it has no `marker` file)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder", field=field)
    if out.is_dir() and any(out.iterdir()) and not (out / marker).exists():
        raise ConfigError(f"{out} is not empty and holds no {marker}; pick a new folder", field=field)


@contextmanager
def staged_dir(out: Path, *, owned: Sequence[str], marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success move its entries into `out`, replacing `owned` ones."""
    check_target(out, marker=marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output is an ordinary folder
    try:
        yield tmp
        if not out.exists():
            os.replace(tmp, out)
            return
        for name in owned:  # stale entries of a previous output (e.g. a peft/ this export has none of)
            _remove(out / name)
        for entry in tmp.iterdir():
            _remove(out / entry.name)
            os.replace(entry, out / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
