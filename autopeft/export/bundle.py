"""`autopeft.yaml`: an exported configuration that trains on its own, with where it came from.

One file holds the recipe as the user wrote it (with the folder its relative paths resolve against),
the configuration (`TrialConfig`: plan and learning-rate settings) and the provenance (study, trial,
objectives, storage URL with its password masked). `read_bundle` validates all of it at once, so `autopeft
train` fails before loading a model, with one line naming the file and the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from autopeft.errors import ConfigError
from autopeft.peft.plan import check_methods
from autopeft.space.config import TrialConfig
from autopeft.train.recipe import TrialRecipe
from autopeft.yamlio import read_yaml, validate

BUNDLE_FILE = "autopeft.yaml"
BUNDLE_VERSION = 1


class Provenance(BaseModel):
    """Where an exported configuration came from (informational: training never reads it)."""

    model_config = ConfigDict(extra="forbid")

    study: str
    trial: int
    fidelity: int = Field(description="The fidelity the objectives were measured at (the recipe's max).")
    objectives: dict[str, float] = Field(default_factory=dict)
    trainable_share: float | None = None
    storage: str = Field(description="The store's URL, its password masked.")
    exported_at: str | None = None


class _BundleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(description="Format version of autopeft.yaml.")
    recipe_dir: str = Field(description="Folder that relative paths in the recipe resolve against.")
    recipe: dict[str, Any]
    config: dict[str, Any]
    provenance: Provenance | None = None


@dataclass(frozen=True)
class Bundle:
    """A validated `autopeft.yaml`: the recipe (with its folder set), the configuration and the provenance."""

    recipe: TrialRecipe
    config: TrialConfig
    recipe_spec: Mapping[str, Any]  # as written, kept so that a rewrite does not add defaults
    recipe_dir: Path
    provenance: Provenance | None = None
    path: Path | None = None

    @classmethod
    def build(cls, recipe_spec: Mapping[str, Any], recipe_dir: str | Path, config: Mapping[str, Any],
              provenance: Provenance | None = None) -> Bundle:
        """Validate the parts (as read from the store) into a bundle; relative `recipe_dir` is made absolute."""
        folder = Path(recipe_dir).expanduser().resolve()
        return cls(*_validated(dict(recipe_spec), folder, dict(config), source=None), recipe_spec=dict(recipe_spec),
                   recipe_dir=folder, provenance=provenance)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": BUNDLE_VERSION,
            "recipe_dir": str(self.recipe_dir),
            "recipe": dict(self.recipe_spec),
            "config": self.config.model_dump(mode="json", exclude_none=True),
        }
        if self.provenance is not None:
            data["provenance"] = self.provenance.model_dump(mode="json", exclude_none=True)
        return data


def bundle_text(bundle: Bundle) -> str:
    """The text of `autopeft.yaml` for `bundle`: what `write_bundle` writes (and the dashboard serves)."""
    header = "# An autopeft configuration"
    if bundle.provenance is not None:
        header += f", exported from study {bundle.provenance.study!r}, trial {bundle.provenance.trial}"
    header += ".\n# Train it at full fidelity with: autopeft train <this file>\n"
    return header + yaml.safe_dump(bundle.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None)


def write_bundle(bundle: Bundle, folder: str | Path) -> Path:
    """Write `folder/autopeft.yaml` (the folder must exist); returns its path."""
    path = Path(folder) / BUNDLE_FILE
    path.write_text(bundle_text(bundle), encoding="utf-8")
    return path


def read_bundle(path: str | Path) -> Bundle:
    """Read and validate `autopeft.yaml`; every error is a `ConfigError` naming the file and the field."""
    path = Path(path)
    source = str(path)
    raw = validate(_BundleFile, read_yaml(path), source=source)
    folder = Path(raw.recipe_dir).expanduser()
    if not folder.is_absolute():
        folder = (path.resolve().parent / folder).resolve()
    recipe, config = _validated(raw.recipe, folder, raw.config, source=source)
    return Bundle(recipe, config, recipe_spec=raw.recipe, recipe_dir=folder, provenance=raw.provenance, path=path)


def _validated(recipe_spec: dict[str, Any], folder: Path, config_spec: dict[str, Any], *,
               source: str | None) -> tuple[TrialRecipe, TrialConfig]:
    recipe = validate(TrialRecipe, recipe_spec, source=source, prefix="recipe")
    recipe._source_dir = folder
    config = validate(TrialConfig, config_spec, source=source, prefix="config")
    try:
        check_methods(config.plan, source=None)
    except ConfigError as err:  # re-anchor the field under `config.` and name the file
        message = str(err).removeprefix(f"{err.field}: ") if err.field else str(err)
        raise ConfigError(message, source=source, field=f"config.{err.field}" if err.field else "config") from None
    return recipe, config


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
