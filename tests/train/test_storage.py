"""`train.storage`: a trial's checkpoint under a URI (fsspec's in-process `memory://` file system here),
pulled into a local copy, pushed back atomically after each save; plain paths untouched; bad locations one
line with nothing written."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from autopeft.errors import ConfigError
from autopeft.space.config import TrialConfig
from autopeft.train.job import TrialJob
from autopeft.train.recipe import TrialRecipe
from autopeft.train.state import STATE_FILE
from autopeft.train.storage import (
    CACHE_ENV,
    TrialFolder,
    check_location,
    delete_folder,
    is_uri,
    join,
    open_trial,
)
from tests.conftest import TINY_PLAN, tiny_recipe_dict


@pytest.fixture
def memory() -> Iterator[tuple[fsspec.AbstractFileSystem, str]]:
    """A fresh root in fsspec's process-wide memory file system, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/runs-{uuid.uuid4().hex}"
    yield fs, f"memory://{root}"
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def test_locations_are_paths_or_uris(tmp_path: Path) -> None:
    assert is_uri("s3://bucket/runs") and is_uri("file:///tmp/runs") and is_uri("memory://x")
    assert not is_uri(tmp_path) and not is_uri(str(tmp_path)) and not is_uri(None) and not is_uri("C:\\runs")
    assert join("s3://bucket/runs/", "st", "trial_3") == "s3://bucket/runs/st/trial_3"
    assert join(tmp_path, "st", "trial_3") == tmp_path / "st" / "trial_3"
    assert check_location(str(tmp_path)) == tmp_path and check_location("memory://a/b/") == "memory://a/b"


def test_push_then_pull_on_another_machine(memory: tuple[fsspec.AbstractFileSystem, str], cache: Path) -> None:
    fs, root = memory
    here = open_trial(f"{root}/st/trial_1")
    assert here.remote and here.local.is_relative_to(cache)
    assert not here.pull(), "nothing stored yet"
    (here.local / STATE_FILE).write_bytes(b"step 2")
    here.push()
    assert fs.cat_file(f"{root.removeprefix('memory://')}/st/trial_1/{STATE_FILE}") == b"step 2"
    assert fs.ls(f"{root.removeprefix('memory://')}/st/trial_1", detail=False) == [
        f"{root.removeprefix('memory://')}/st/trial_1/{STATE_FILE}"], "no temporary upload left behind"
    here.release()
    assert not (here.local / STATE_FILE).exists(), "the local copy goes when the job ends"

    there = TrialFolder(f"{root}/st/trial_1", local=cache / "other-node")
    assert there.pull() and (there.local / STATE_FILE).read_bytes() == b"step 2"
    with there.readable() as folder:
        assert (folder / STATE_FILE).read_bytes() == b"step 2"
    assert not folder.exists(), "a read-only copy is temporary"


def test_pull_replaces_a_stale_local_copy(memory: tuple[fsspec.AbstractFileSystem, str]) -> None:
    _, root = memory
    folder = open_trial(f"{root}/st/trial_2")
    folder.local.mkdir(parents=True)
    (folder.local / STATE_FILE).write_bytes(b"left by a deleted study of the same name")
    assert not folder.pull() and not (folder.local / STATE_FILE).exists()


def test_a_failed_upload_keeps_the_stored_state_whole(memory: tuple[fsspec.AbstractFileSystem, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fs, root = memory
    folder = open_trial(f"{root}/st/trial_3")
    folder.local.mkdir(parents=True)
    (folder.local / STATE_FILE).write_bytes(b"old")
    folder.push()
    (folder.local / STATE_FILE).write_bytes(b"new")

    def broken_move(*args: object, **kwargs: object) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(type(fs), "mv", broken_move)
    with pytest.raises(OSError, match="connection reset"):
        folder.push()
    monkeypatch.undo()
    inner = f"{root.removeprefix('memory://')}/st/trial_3"
    assert fs.ls(inner, detail=False) == [f"{inner}/{STATE_FILE}"] and fs.cat_file(f"{inner}/{STATE_FILE}") == b"old"


def test_a_plain_path_is_used_in_place(tmp_path: Path, cache: Path) -> None:
    folder = open_trial(str(tmp_path / "trial_0"))
    assert not folder.remote and folder.local == tmp_path / "trial_0"
    folder.local.mkdir()
    (folder.local / STATE_FILE).write_bytes(b"x")
    folder.push()
    folder.release()
    assert folder.pull() and (folder.local / STATE_FILE).read_bytes() == b"x", "nothing copied, nothing dropped"
    with folder.readable() as read:
        assert read == folder.local
    assert not cache.exists()


def test_delete_folder(memory: tuple[fsspec.AbstractFileSystem, str], tmp_path: Path) -> None:
    fs, root = memory
    fs.pipe_file(f"{root.removeprefix('memory://')}/st/trial_0/{STATE_FILE}", b"x")
    assert delete_folder(f"{root}/st") and not fs.exists(f"{root.removeprefix('memory://')}/st")
    assert not delete_folder(f"{root}/st")
    (tmp_path / "st" / "trial_0").mkdir(parents=True)
    assert delete_folder(tmp_path / "st") and not (tmp_path / "st").exists()


@pytest.mark.parametrize(("location", "expected"), [
    ("nope://bucket/runs", "runs-dir: unknown scheme 'nope' in 'nope://bucket/runs'; accepted: a path, or a URI"),
    pytest.param("s3://bucket/runs", "runs-dir: s3:// needs the package s3fs, which is not installed "
                 "(pip install s3fs)", marks=pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None,
                                                                reason="s3fs is installed here")),
    pytest.param("gs://bucket/runs", "runs-dir: gs:// needs the package gcsfs, which is not installed "
                 "(pip install gcsfs)", marks=pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None,
                                                                 reason="gcsfs is installed here")),
])
def test_bad_locations_are_one_line(location: str, expected: str, cache: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        check_location(location)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="trial_dir: "):
        open_trial(f"{location}/st/trial_0")
    assert not cache.exists()


def test_a_file_is_not_a_runs_folder(tmp_path: Path) -> None:
    file = tmp_path / "runs"
    file.write_text("x")
    for location in (str(file), f"file://{file}"):
        with pytest.raises(ConfigError, match="exists and is not a folder"):
            check_location(location)


def test_a_trial_resumes_from_the_state_another_job_pushed(tiny_model_dir: Path,
                                                           memory: tuple[fsspec.AbstractFileSystem, str],
                                                           cache: Path) -> None:
    """What a worker does: train in the local copy, push on save; a later job (another node) pulls it."""
    _, root = memory
    recipe = TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir, fmin=2, fmax=4, threads=1))
    config = TrialConfig.model_validate({"plan": TINY_PLAN, "learning_rate": 5e-3})
    first = TrialFolder(f"{root}/st/trial_0", local=cache / "node-a")
    first.pull()
    assert TrialJob(recipe, config, trial_dir=first.local, on_save=first.push).run(2).steps == 2
    first.release()

    second = TrialFolder(f"{root}/st/trial_0", local=cache / "node-b")
    assert second.pull()
    job = TrialJob(recipe, config, trial_dir=second.local, on_save=second.push)
    assert job.session.step == 2, "resumed from the pushed checkpoint"
    assert job.run(4).steps == 4
    with open_trial(f"{root}/st/trial_0").readable() as folder:
        from autopeft.train.state import load_state

        state = load_state(folder)
        assert state is not None and state.step == 4
