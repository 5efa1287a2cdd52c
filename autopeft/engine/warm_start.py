"""Warm start across tasks: a new study proposes another study's Pareto front first, then its space's defaults.

AutoPEFT reports that the configurations on one task's front do well on others too, so a study of a new
task (or model) of the same space need not start from random proposals: `study run --warm-start OTHER`
seeds it with OTHER's full-fidelity front, best score first. The seeds are stored with the study like the
space's defaults (`CheckedStudy.seeds`, `engine.study.seed_names`); their names say where each came from,
which is how `pareto`, `trial show` and `study show` label the trials that were seeds (`seed_origins`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from autopeft.errors import ConfigError
from autopeft.space.space import WARM_START_PREFIX

if TYPE_CHECKING:
    from autopeft.engine.checks import CheckedStudy
    from autopeft.engine.definition import StudyDefinition
    from autopeft.store import Store

#: The CLI option a warm start's errors name.
OPTION = "--warm-start"
#: How the space's defaults are labelled (a warm start's seeds: `WARM_START_PREFIX`, which no default may take).
DEFAULT_PREFIX = "default: "
#: Fields of a space that do not change what a configuration is: two spaces differing only here are one space.
_COSMETIC = {"name", "description", "defaults"}

Seeds = tuple[tuple[str, dict[str, Any]], ...]


def warm_start_name(study: str, number: int) -> str:
    """The seed name of trial ``number`` of ``study``'s front."""
    return f"{WARM_START_PREFIX}{study} #{number}"


def is_warm_start(name: str) -> bool:
    return name.startswith(WARM_START_PREFIX)


def warm_start_study(name: str) -> str:
    """The study a warm-start seed came from (`warm start: OTHER #7` -> OTHER)."""
    return name.removeprefix(WARM_START_PREFIX).rpartition(" #")[0]


def origin_label(name: str) -> str:
    """What `pareto` shows for a seed: its warm-start name, or `default: NAME` for one of the space's defaults."""
    return name if is_warm_start(name) else f"{DEFAULT_PREFIX}{name}"


def seed_origins(definition: StudyDefinition) -> dict[Any, str]:
    """Configuration (`config_key`) -> the origin label of the seed it is, for the study's stored seeds."""
    from autopeft.engine.study import seed_names

    return {key: origin_label(name) for key, name in seed_names(definition).items()}


def trial_origin(origins: Mapping[Any, str], config: Mapping[str, Any]) -> str | None:
    """The origin of a trial's configuration (None: the search proposed it)."""
    from autopeft.space.encoding import config_key

    return origins.get(config_key(config))


def with_warm_start(store: Store, other: str, checked: CheckedStudy) -> CheckedStudy:
    """``checked`` with ``other``'s front first among its seeds (`warm_start_seeds`)."""
    return replace(checked, seeds=warm_start_seeds(store, other, checked))


def warm_start_seeds(store: Store, other: str, checked: CheckedStudy) -> Seeds:
    """The new study's seeds: ``other``'s full-fidelity front (best score first), then ``checked.seeds``
    (the space's defaults, unless turned off), each configuration once.

    Refused (`ConfigError` naming `--warm-start`) where ``other`` is not in the store, searched another
    space, has no full-fidelity trial better than chance, or a front configuration does not compile on the
    new study's model (another layer count, where the space searches every layer). Front configurations the
    new model's constraints refuse are left out (the sampler would skip them); none left is refused too.
    """
    from autopeft.engine.definition import StudyDefinition
    from autopeft.engine.front import study_front
    from autopeft.space.encoding import config_key

    known = [s.name for s in store.list_studies()]
    if other not in known:
        raise ConfigError(f"no study {other!r} in {store}; studies: {', '.join(known) or 'none'}", field=OPTION)
    definition = StudyDefinition.from_record(store.get_study(other))
    _check_same_space(other, definition, checked)
    front = study_front(store, other)
    if not front.completed:
        raise ConfigError(f"study {other!r} has no trial complete at full fidelity, so no front to start from",
                          field=OPTION)
    if not front.entries:  # a trial at chance is on no front (`front.compute_front`)
        raise ConfigError(f"none of the {len(front.completed)} trials of study {other!r} at full fidelity scores "
                          "better than chance, so no front to start from", field=OPTION)
    num_layers = checked.counter.num_layers
    seeds: list[tuple[str, dict[str, Any]]] = []
    for entry in front.entries:  # best score first
        config = dict(entry.config)
        try:
            checked.space.compile(config, num_layers)
        except ConfigError as err:
            raise ConfigError(f"trial {entry.number} of study {other!r} does not fit this study's model "
                              f"({num_layers} layers): {err}", field=OPTION) from None
        if checked.counter.feasible(config):
            seeds.append((warm_start_name(other, entry.number), config))
    if not seeds:
        raise ConfigError(f"none of the {len(front.entries)} configurations on the front of {other!r} meets the "
                          "space's constraints on this study's model", field=OPTION)
    seen: set[Any] = set()
    out = []
    for name, config in [*seeds, *checked.seeds]:
        key = config_key(config)
        if key not in seen:
            seen.add(key)
            out.append((name, config))
    return tuple(out)


def _check_same_space(other: str, definition: StudyDefinition, checked: CheckedStudy) -> None:
    """The space ``other`` stored is the new study's, up to its name, description and defaults."""
    try:
        theirs = definition.search_space().model_dump(exclude=_COSMETIC)
    except ConfigError as err:
        raise ConfigError(f"the space study {other!r} stored no longer reads: {err}", field=OPTION) from None
    ours = checked.space.model_dump(exclude=_COSMETIC)
    differ = [key for key in ours if ours[key] != theirs.get(key)]
    if differ:
        raise ConfigError(f"study {other!r} searched another space (its {_fields(differ)} differ from "
                          f"{checked.space_path}'s); a warm start needs the same space", field=OPTION)


def _fields(keys: Sequence[str]) -> str:
    return " and ".join(keys) if len(keys) <= 2 else f"{', '.join(keys[:-1])} and {keys[-1]}"
