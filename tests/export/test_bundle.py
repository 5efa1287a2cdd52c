"""`autopeft.yaml` round-trips, its errors name the file and field, and staged outputs are all-or-nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autopeft.errors import ConfigError
from autopeft.export.bundle import BUNDLE_FILE, Bundle, Provenance, read_bundle, write_bundle
from autopeft.export.staging import staged_dir
from autopeft.export.study_export import public_url
from tests.conftest import TINY_PLAN, tiny_recipe_dict


def _bundle(tmp_path: Path) -> Bundle:
    recipe = tiny_recipe_dict(Path("model"), fmax=6)  # relative model path: resolved against recipe_dir
    provenance = Provenance(study="s", trial=3, fidelity=6, objectives={"score": 0.8, "trainable_params": 2048.0},
                            storage="sqlite:///x.db")
    return Bundle.build(recipe, tmp_path / "recipes", {"plan": TINY_PLAN, "learning_rate": 2e-3}, provenance)


def test_roundtrip(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    path = write_bundle(bundle, tmp_path)
    assert path == tmp_path / BUNDLE_FILE
    again = read_bundle(path)
    assert again.recipe == bundle.recipe and again.config == bundle.config
    assert again.provenance == bundle.provenance
    assert again.recipe.base_dir == (tmp_path / "recipes").resolve()
    assert again.recipe.training_for(again.config).learning_rate == 2e-3
    assert yaml.safe_load(path.read_text())["recipe"] == tiny_recipe_dict(Path("model"), fmax=6)  # as written


def test_relative_recipe_dir_resolves_against_the_file(tmp_path: Path) -> None:
    data = _bundle(tmp_path).to_dict()
    data["recipe_dir"] = "../recipes"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / BUNDLE_FILE).write_text(yaml.safe_dump(data))
    assert read_bundle(tmp_path / "out" / BUNDLE_FILE).recipe.base_dir == (tmp_path / "recipes").resolve()


@pytest.mark.parametrize(("edit", "field", "message"), [
    (lambda d: d["recipe"]["fidelity"].update(min=50), "recipe.fidelity", "must not exceed"),
    (lambda d: d["config"].update(learning_rate=-1), "config.learning_rate", "greater than 0"),
    (lambda d: d["config"]["plan"].update({"0": [{"method": "loraz"}]}), "config.plan.0", "accepted: lora"),
    (lambda d: d.pop("recipe"), "recipe", "Field required"),
    (lambda d: d.update(version=9), "version", "Input should be 1"),
    (lambda d: d.update(extra=1), "extra", "unknown field; accepted: version, recipe_dir"),
])
def test_errors_name_file_and_field(tmp_path: Path, edit: object, field: str, message: str) -> None:
    data = _bundle(tmp_path).to_dict()
    edit(data)  # type: ignore[operator]
    path = tmp_path / BUNDLE_FILE
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        read_bundle(path)
    assert str(info.value).startswith(f"{path}: {field}: ")
    assert message in str(info.value)


def test_public_url_masks_the_password() -> None:
    assert public_url("postgresql+psycopg://me:secret@db:5432/x") == "postgresql+psycopg://me:***@db:5432/x"
    assert public_url("postgresql+psycopg://me@db:5432/x") == "postgresql+psycopg://me@db:5432/x"
    assert public_url("sqlite:////data/autopeft.db") == "sqlite:////data/autopeft.db"
    assert public_url("sqlite:///autopeft.db") == f"sqlite:///{Path.cwd() / 'autopeft.db'}"


def test_staged_dir_leaves_nothing_on_error_and_replaces_owned_entries(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_dir(out, owned=("a", "b"), marker="a") as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with staged_dir(out, owned=("a", "b"), marker="a") as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").mkdir()
    (out / "mine").write_text("user file")
    with staged_dir(out, owned=("a", "b"), marker="a") as tmp:
        (tmp / "a").write_text("2")  # no b this time: the stale b goes
    assert sorted(p.name for p in out.iterdir()) == ["a", "mine"] and (out / "a").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_staged_dir_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty and holds no a"), staged_dir(tmp_path, owned=("a",), marker="a"):
        pass
