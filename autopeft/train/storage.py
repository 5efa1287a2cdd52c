"""Where trial checkpoints live: a local folder, or any URI fsspec knows (`s3://`, `gs://`, `file://`, ...).

A paused trial may resume on another node of a cluster, so its checkpoint must be where every node sees
it: a folder mounted on every node (NFS), which is a plain path here, or an object store. Every read and
write of a trial's checkpoint outside the training session goes through this module (the worker, `trial
run --trial-dir`, `export`, `study delete`); no other module calls fsspec.

The design, chosen because it is the simplest that stays correct on object stores:

- Training always reads and writes a local folder (`TrialFolder.local`), as it always did: torch saves
  to a file, the folder lock (`flock`) and the atomic rename of `train.state.save_state` stay as they
  are. A plain path is that folder itself, and nothing is copied.
- For a URI, the job first *pulls* the trial's state file from the URI into a local cache folder (under
  the system temp folder, or ``AUTOPEFT_RUNS_CACHE``; one folder per trial location), replacing any older
  local copy: the URI is the truth, so a trial that last trained on another node resumes from what that
  node pushed. After every save the job *pushes* the state file back, atomically: it is uploaded under a
  temporary name and then moved onto ``state.pt`` (a rename on a file system; on an object store a
  whole-object copy, which readers see entirely or not at all). When the job ends its local copy is
  dropped, so a node's disk does not fill with the states of finished trials.
- Only the state file travels (the one file a trial folder holds besides its lock).
- Checks come before anything is written: an unknown scheme, or a scheme whose fsspec implementation is
  not installed (s3fs for ``s3://``, gcsfs for ``gs://``: optional, installed by the user, who provides
  credentials as those libraries read them), is one `ConfigError` line naming what to install.

Two jobs of one trial on one node are serialised by the worker's folder lock on the local copy. Across
nodes nothing locks the URI: the driver runs at most one live attempt of a trial at a time (a job it
gave up on is cancelled before the trial runs again), which is what keeps two jobs from pushing at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autopeft.errors import ConfigError

#: The file a trial folder holds its training state in (`train.state`); this module imports no torch.
STATE_FILE = "state.pt"

#: Where URI trials train locally (default: ``<system temp>/autopeft-runs-cache``).
CACHE_ENV = "AUTOPEFT_RUNS_CACHE"
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_LOCAL = ("file", "local")

#: A runs folder or a trial folder: a local path, or a URI (a string with a scheme).
Location = Path | str


def is_uri(location: Location | None) -> bool:
    """A string with a scheme (``s3://...``, ``file:///...``); a `Path` or a plain path string is not one."""
    return isinstance(location, str) and _URI.match(location) is not None


def check_location(location: Location, *, field: str = "runs-dir") -> Location:
    """A runs (or trial) location that can be used: a `Path`, or a URI whose file system is installed.

    Nothing is written and nothing is contacted (no credentials are needed to check): an unknown scheme or
    a missing implementation is one `ConfigError` line; a local path or ``file://`` URI that names a file
    is refused too.
    """
    if not is_uri(location):
        path = Path(location).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} exists and is not a folder", field=field)
        return path
    uri = str(location).rstrip("/")
    if _protocol(uri, field=field) in _LOCAL:  # only a local URI is opened: a cloud file system may reach out
        local = Path(_filesystem(uri, field=field)[1])
        if local.exists() and not local.is_dir():
            raise ConfigError(f"{uri} exists and is not a folder", field=field)
    return uri


def join(location: Location, *parts: str) -> Location:
    """``location/part/...``: a `Path` for a local folder, a URI string for a URI."""
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return Path(location).joinpath(*parts)


def delete_folder(location: Location) -> bool:
    """Remove a folder and everything in it (`study delete`); False when there was none."""
    if not is_uri(location):
        path = Path(location)
        if not path.is_dir():
            return False
        shutil.rmtree(path)
        return True
    fs, inner = _filesystem(str(location))
    if not fs.exists(inner):
        return False
    fs.rm(inner, recursive=True)
    return True


class TrialFolder:
    """One trial's checkpoint folder: `local` is where training reads and writes it.

    For a plain path `local` is the folder itself and `pull`, `push` and `release` do nothing. For a URI,
    `pull` copies the stored state into `local` (or clears a stale local one), `push` uploads it, and
    `release` drops the local copy.
    """

    def __init__(self, location: Location, *, local: Path | None = None) -> None:
        self.location: Location = location
        self.remote = is_uri(location)
        if not self.remote:
            self.local = Path(location).expanduser()
            return
        self._fs, self._path = _filesystem(str(location), field="trial_dir")
        self.local = local if local is not None else cache_folder(str(location))

    def __str__(self) -> str:
        return str(self.location)

    @property
    def state_location(self) -> str:
        """Where the state file is kept (a path or a URI)."""
        return str(join(self.location, STATE_FILE))

    def pull(self) -> bool:
        """Make `local` hold the stored state (True), or none if none is stored (False)."""
        if not self.remote:
            return (self.local / STATE_FILE).is_file()
        self.local.mkdir(parents=True, exist_ok=True)
        target = self.local / STATE_FILE
        stored = f"{self._path}/{STATE_FILE}"
        if not self._fs.exists(stored):
            target.unlink(missing_ok=True)
            return False
        tmp = self.local / f".{STATE_FILE}.pull-{uuid.uuid4().hex}"
        try:
            self._fs.get_file(stored, str(tmp))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def push(self) -> None:
        """Upload the local state file under a temporary name, then move it onto the stored one."""
        if not self.remote:
            return
        source = self.local / STATE_FILE
        final = f"{self._path}/{STATE_FILE}"
        tmp = f"{self._path}/.{STATE_FILE}.{uuid.uuid4().hex}.tmp"
        try:
            self._fs.put_file(str(source), tmp)
        except FileNotFoundError:  # a file system with real folders (file://, NFS, SFTP): make the folder
            self._fs.makedirs(self._path, exist_ok=True)
            self._fs.put_file(str(source), tmp)
        try:
            self._fs.mv(tmp, final)
        except BaseException:
            with contextlib.suppress(Exception):  # cleaning up must not hide the upload's own error
                self._fs.rm(tmp)
            raise

    def release(self) -> None:
        """Drop the local copy of a URI trial's state (the stored one stays); nothing for a plain path."""
        if self.remote:
            (self.local / STATE_FILE).unlink(missing_ok=True)

    @contextmanager
    def checked_out(self) -> Iterator[Path]:
        """`local`, holding the stored state (`pull`), for one job to train in; the local copy of a URI trial's
        state is dropped afterwards (`release`), however the job ended. Push after each save (`push`)."""
        self.pull()
        try:
            yield self.local
        finally:
            self.release()

    @contextmanager
    def readable(self) -> Iterator[Path]:
        """A local folder holding the trial's stored state (if any) for reading, gone afterwards for a URI."""
        if not self.remote:
            yield self.local
            return
        with tempfile.TemporaryDirectory(prefix="autopeft-state-") as tmp:
            TrialFolder(self.location, local=Path(tmp)).pull()
            yield Path(tmp)


def open_trial(location: Location) -> TrialFolder:
    """The checkpoint folder of one trial at ``location`` (a path, or a URI)."""
    return TrialFolder(location)


def cache_folder(location: str) -> Path:
    """The local folder where the trial stored at URI ``location`` trains on this machine."""
    root = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "autopeft-runs-cache")
    key = hashlib.sha256(location.rstrip("/").encode()).hexdigest()[:24]
    return root / key


def _protocol(uri: str, *, field: str) -> str:
    """The scheme of ``uri`` once its fsspec implementation is known to import, else a `ConfigError`."""
    import fsspec
    from fsspec.core import split_protocol
    from fsspec.registry import known_implementations

    protocol = split_protocol(uri)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        spec = known_implementations.get(protocol, {})
        package = str(spec.get("class", protocol)).split(".")[0]
        raise ConfigError(f"{protocol}:// needs the package {package}, which is not installed "
                          f"(pip install {package})", field=field) from None
    except ValueError:
        raise ConfigError(f"unknown scheme {protocol!r} in {uri!r}; accepted: a path, or a URI that fsspec "
                          "knows (file://, s3:// with s3fs, gs:// with gcsfs, ...)", field=field) from None
    return str(protocol)


def _filesystem(uri: str, *, field: str = "runs-dir") -> tuple[Any, str]:
    """(fsspec file system, path in it) for ``uri``, or a `ConfigError` naming what to install."""
    from fsspec.core import url_to_fs

    _protocol(uri, field=field)
    try:
        fs, path = url_to_fs(uri)
    except ImportError as err:  # a chained URL's inner scheme
        raise ConfigError(f"{uri!r} needs a package that is not installed ({err})", field=field) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{uri!r} is not a usable URI ({err})", field=field) from None
    return fs, str(path).rstrip("/")


