"""Where `model.name` points: a packaged alias, a local folder, a Hugging Face id, or a missing folder, which is
named as such (transformers would call it a malformed repo id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.errors import ConfigError
from autopeft.train.model import resolve_model_path


@pytest.mark.parametrize("name", ["bert-base-uncased", "google/bert_uncased_L-2_H-128_A-2", "gpt2"])
def test_hub_ids_pass_through(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path(name, tmp_path) == name


def test_local_folders_resolve_against_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path.parent)
    assert resolve_model_path("models/tiny", tmp_path) == str(tmp_path / "models" / "tiny")
    assert resolve_model_path(str(tmp_path / "models"), None) == str(tmp_path / "models")


@pytest.mark.parametrize("name", ["./models/nope", "models/nope", "/no/such/model", "~/no-such-model-here",
                                  "a/b/c", "my model", "../up/model"])
def test_a_missing_folder_is_named(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve_model_path(name, tmp_path)
    message = str(err.value)
    assert message.startswith("model.name: no such folder: ") and "Repo id" not in message
    assert Path(name).expanduser().name in message


def test_a_file_is_not_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.name: not a folder: .*weights\.bin"):
        resolve_model_path("weights.bin", tmp_path)
