"""`export`: one trial of a study out as `autopeft.yaml`, plus `peft/` (config, and weights when saved).

The `peft` config is built on a `meta` copy of the recipe's model (its config file only, no weights),
so exporting a plan costs no model load. Trained weights are exported only when the engine saved the
trial's state at full fidelity in its trial folder; training that state again is `autopeft train`'s job.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from autopeft.engine.definition import StudyDefinition
from autopeft.engine.front import Front, FrontEntry, study_front
from autopeft.engine.paths import runs_dir_for, trial_dir_for
from autopeft.errors import AutopeftError
from autopeft.export.bundle import BUNDLE_FILE, Bundle, Provenance, now_iso, write_bundle
from autopeft.export.select import PeftCheck, Rule, select, share_pct
from autopeft.export.staging import staged_dir
from autopeft.store import display_url
from autopeft.train.storage import is_uri

if TYPE_CHECKING:
    from autopeft.export.peft_format import PeftExport
    from autopeft.peft.roles import ArchitectureMap
    from autopeft.space.config import TrialConfig
    from autopeft.store import Store
    from autopeft.train.recipe import TrialRecipe

PEFT_DIR = "peft"


@dataclass(frozen=True)
class ExportReport:
    """What `export_trial` wrote, and why anything was left out."""

    out_dir: Path
    entry: FrontEntry
    bundle: Bundle
    peft: PeftExport | None  # None: the model's config could not be read (see notes)
    weights: bool  # trained adapter weights written under peft/
    notes: list[str] = field(default_factory=list)

    @property
    def bundle_path(self) -> Path:
        return self.out_dir / BUNDLE_FILE

    @property
    def peft_dir(self) -> Path | None:
        return self.out_dir / PEFT_DIR if self.peft is not None and self.peft.expressible else None


def public_url(url: str) -> str:
    """The store URL with its password masked (`display_url`: provenance is meant to be shared), SQLite
    paths absolute (meaningful from any folder)."""
    try:
        u = make_url(url)
    except Exception:  # an unparsable URL never reached a store
        return display_url(url)
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        u = u.set(database=str(Path(str(u.database)).expanduser().resolve()))
    return display_url(u)


def default_trial_dir(storage_url: str, study: str, number: int) -> Path | str:
    """Where the engine put the trial's checkpoint by default (see `autopeft.engine.paths`)."""
    return trial_dir_for(runs_dir_for(storage_url), study, number)


def trial_dir_of(entry: FrontEntry, storage_url: str, study: str) -> Path | str:
    """The trial's checkpoint folder as its worker recorded it: a local path, or a URI (`train.storage`)."""
    recorded = entry.metrics.get("trial_dir")
    if isinstance(recorded, str) and recorded:
        return recorded if is_uri(recorded) else Path(recorded).expanduser()
    return default_trial_dir(storage_url, study, entry.number)


def chosen_bundle(store: Store, study: str, rule: Rule | None = None, *, front: Front | None = None
                  ) -> tuple[FrontEntry, Bundle]:
    """The trial `rule` picks and its `autopeft.yaml` contents (read only: nothing is written).

    ``front``: the study's `study_front` when the caller has it already (the dashboard's view), which saves
    reading every trial and result of the study again (seconds for 10,000 trials).
    """
    record = store.get_study(study)  # NotFoundError lists the studies
    definition = StudyDefinition.from_record(record)
    front = front if front is not None else study_front(store, study)
    rule = rule or Rule()
    check = peft_check_for(definition.trial_recipe()) if rule.peft_only else None
    # The trial rows only sharpen the message about a trial that is not on the front: read them for that.
    missing = rule.trial is not None and all(e.number != rule.trial for e in front.completed)
    entry = select(front, rule, study=f"study {study!r}", trials=store.trials(study) if missing else (),
                   peft_check=check)
    config_spec = dict(entry.plan or {})
    if "plan" not in config_spec:
        raise AutopeftError(f"trial {entry.number} of study {study!r} has no compiled plan in the store")
    pct = share_pct(entry, front)
    provenance = Provenance(study=study, trial=entry.number, fidelity=entry.fidelity,
                            objectives=dict(entry.objectives), trainable_share=None if pct is None else pct / 100,
                            storage=public_url(store.url), exported_at=now_iso())
    return entry, Bundle.build(definition.recipe, definition.recipe_dir, config_spec, provenance)


@dataclass(frozen=True)
class ExportTexts:
    """An export made in memory: the `autopeft.yaml` text and, where `peft` can express the plan, the
    `adapter_config.json` text (what `export_trial` writes, without weights)."""

    entry: FrontEntry
    bundle_yaml: str
    adapter_config: str | None
    peft: PeftExport | None
    notes: list[str] = field(default_factory=list)


def export_texts(store: Store, study: str, rule: Rule | None = None, *, front: Front | None = None) -> ExportTexts:
    """`export_trial`'s files as text, with nothing written to the store, the runs folder or `--out`.

    The peft config goes through `peft`'s own `save_pretrained` (into a throwaway folder, read back), so
    the text is byte for byte the file `export_trial` writes when it has no weights to export.
    """
    import tempfile

    from autopeft.export.bundle import bundle_text

    entry, bundle = chosen_bundle(store, study, rule, front=front)
    notes: list[str] = []
    peft = peft_config_for(bundle.recipe, bundle.config, notes)
    adapter = None
    if peft is not None and peft.config is not None:
        with tempfile.TemporaryDirectory(prefix="autopeft-peft-") as tmp:
            _write_peft_config(peft.config, Path(tmp))
            adapter = (Path(tmp) / "adapter_config.json").read_text(encoding="utf-8")
    return ExportTexts(entry, bundle_text(bundle), adapter, peft, notes)


def export_trial(store: Store, study: str, out_dir: str | Path, rule: Rule | None = None, *,
                 with_weights: bool = True) -> ExportReport:
    """Pick a trial by `rule` and write `out_dir/autopeft.yaml` and, where `peft` can express it, `peft/`.

    Nothing is written when anything fails (the outputs are staged in a temporary folder).
    """
    entry, bundle = chosen_bundle(store, study, rule)
    out = Path(out_dir)
    notes: list[str] = []
    with staged_dir(out, owned=(BUNDLE_FILE, PEFT_DIR), marker=BUNDLE_FILE) as tmp:
        write_bundle(bundle, tmp)
        peft = peft_config_for(bundle.recipe, bundle.config, notes)
        weights = False
        if peft is not None and peft.config is not None:
            trial_dir = trial_dir_of(entry, store.url, study)
            if with_weights:
                try:
                    weights = _weights_from_state(bundle.recipe, bundle.config, trial_dir, tmp / PEFT_DIR, notes)
                except AutopeftError as err:  # optional: the config alone is still a complete export
                    notes.append(f"no weights: {err}")
                    shutil.rmtree(tmp / PEFT_DIR, ignore_errors=True)
            if not weights:
                _write_peft_config(peft.config, tmp / PEFT_DIR)
    return ExportReport(out, entry, bundle, peft, weights, notes)


def peft_config_for(recipe: TrialRecipe, config: TrialConfig, notes: list[str] | None = None) -> PeftExport | None:
    """`to_peft_config` for the recipe's model, built on the `meta` device from its config file alone.

    None (with the reason appended to `notes`) when the model's config cannot be read offline.
    """
    try:
        model = _meta_model(recipe)
    except OSError as err:
        if notes is not None:
            notes.append(f"no peft config: {err}")
        return None
    return _peft_export(recipe, model, config.plan)


def peft_check_for(recipe: TrialRecipe) -> PeftCheck:
    """Why `peft` cannot load a trial's plan on the recipe's model (empty when it can), for `Rule.peft_only`;
    the model is built once, on the `meta` device."""
    try:
        model = _meta_model(recipe)
    except OSError as err:
        raise AutopeftError(f"cannot tell which trials peft can load: {err}") from None

    def check(entry: FrontEntry) -> list[str]:
        plan = dict(entry.plan or {}).get("plan")
        if plan is None:
            return ["no compiled plan in the store"]
        return _peft_export(recipe, model, plan).unsupported

    return check


def _meta_model(recipe: TrialRecipe) -> Any:
    """The recipe's model on the `meta` device, from its config file alone; OSError saying why not."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from autopeft.train.model import resolve_model_path

    try:  # a local model folder moved since the study ran is a note, as an unreadable config is
        model_config = AutoConfig.from_pretrained(resolve_model_path(recipe.model.name, recipe.base_dir))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OSError(f"cannot read the config of model {recipe.model.name!r} ({first})") from None
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(model_config)


def _peft_export(recipe: TrialRecipe, model: Any, plan_spec: Any) -> PeftExport:
    from autopeft.export.peft_format import portable_base_model, to_peft_config
    from autopeft.peft import PeftPlan
    from autopeft.peft.inject import model_layers
    from autopeft.peft.roles import architecture_for

    arch = architecture_for(model, _role_map(recipe))
    plan = PeftPlan.from_selectors(plan_spec, len(model_layers(model, arch)), source="config")
    return to_peft_config(plan, model, arch=arch, base_model=portable_base_model(recipe.model.name, recipe.base_dir))


def _write_peft_config(config: dict[str, Any], folder: Path) -> None:
    from peft import get_peft_config

    folder.mkdir(parents=True, exist_ok=True)
    get_peft_config(dict(config)).save_pretrained(str(folder))


def _weights_from_state(recipe: TrialRecipe, config: TrialConfig, trial_dir: Path | str, folder: Path,
                        notes: list[str]) -> bool:
    """The trial's trained adapter in `peft` format, when its saved state reached full fidelity.

    A state kept under a URI is read from a temporary local copy (`TrialFolder.readable`).
    """
    from autopeft.errors import ConfigError
    from autopeft.export.peft_format import portable_base_model, save_peft_adapter
    from autopeft.export.unwrap import plain_layers
    from autopeft.train.session import TrainingSession
    from autopeft.train.state import load_state
    from autopeft.train.storage import open_trial

    try:
        with open_trial(trial_dir).readable() as local:
            state = load_state(local)
    except ConfigError as err:  # a URI whose file system is not installed here
        notes.append(f"no weights: cannot read the state in {trial_dir} ({err.message})")
        return False
    except Exception as err:  # a torn or foreign file: the config alone is still a useful export
        notes.append(f"no weights: cannot read the state in {trial_dir} ({type(err).__name__})")
        return False
    if state is None:
        notes.append(f"no weights: no saved state in {trial_dir} (train them with `autopeft train`)")
        return False
    full = recipe.fidelity.to_steps(recipe.fidelity.max, recipe.training_for(config).batch_size)
    if state.step < full:
        notes.append(f"no weights: the state in {trial_dir} is at step {state.step} of {full}")
        return False
    session = TrainingSession(recipe, config)
    try:
        session.restore(state)
    except ConfigError:
        notes.append(f"no weights: the state in {trial_dir} belongs to another configuration or recipe")
        return False
    with plain_layers(session.model, _role_map(recipe)) as model:
        save_peft_adapter(model, session.plan, folder, arch=_role_map(recipe),
                          base_model=portable_base_model(recipe.model.name, recipe.base_dir))
    return True


def _role_map(recipe: TrialRecipe) -> ArchitectureMap | None:
    from autopeft.peft.roles import role_map_from_dict

    return role_map_from_dict(recipe.model.role_map) if recipe.model.role_map else None
