"""Every check a study's inputs get before anything is written, in one place.

`autopeft study run` (through `check_study` and `check_run_options`), `study resume`, `space check` and
the Python API (`engine.study.new_study`) share these, so a bad space, recipe, constraint or option is
one `ConfigError` line naming the file and field, and never a half-written study: no row, no database
file, no runs folder. The space is compiled against the recipe's model (a `meta` skeleton, no weights):
every reachable local configuration through the real plan validation (`ParamCounter.bounds`), so a rank
of 0 or an unknown role fails here, not in a trial a minute later; the plan entry to blame is then
compiled with the ends of what it reads, so that the line names the space's field (`layers.rank`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.engine.definition import make_objectives
from autopeft.engine.executors import EXECUTORS, check_devices_fit
from autopeft.engine.strategy import DEFAULT_STRATEGY, check_strategy
from autopeft.errors import ConfigError
from autopeft.train.storage import check_location

if TYPE_CHECKING:
    from autopeft.engine.loop import Budget
    from autopeft.space.params import Param
    from autopeft.space.space import PlanEntry, SearchSpace
    from autopeft.train.counting import ParamCounter
    from autopeft.train.recipe import TrialRecipe
    from autopeft.train.tasks.types import TaskData

#: Database backends the store supports.
BACKENDS = ("sqlite", "postgresql")
#: Seeds the samplers accept (numpy and Sobol need a non-negative 32-bit seed).
MAX_SEED = 2**32 - 1
#: Plan-entry value combinations compiled per entry (the ends of each range, every choice).
MAX_ENTRY_COMBINATIONS = 512
_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True)
class RunOptions:
    """How a run (or resume) of a study spends its budget and where its trials go, validated."""

    budget: Budget
    workers: int | None  # None: for Ray, what the cluster holds
    executor: str
    runs_dir: Path | str | None  # a local folder, or a URI (`train.storage`)
    executor_options: Mapping[str, Any] | None = None  # Ray's: address, gpus_per_trial, cpus_per_trial
    devices: tuple[str, ...] | None = None  # `--devices`, as cuda:N names the local pool shares out


@dataclass(frozen=True)
class CheckedStudy:
    """A new study's inputs after every check: what `engine.study.create_study` writes."""

    space_path: Path
    recipe_path: Path
    space: SearchSpace
    recipe: TrialRecipe
    counter: ParamCounter
    name: str | None
    strategy: str
    seed: int
    objectives: tuple[str, ...]
    eta: float
    budget: float | None
    #: (name, configuration) a study proposes first: the space's defaults (unless turned off), a warm start's front.
    seeds: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: The task's chance score (`TaskData.chance`): the score objective's hypervolume reference.
    chance: float = 0.0


# -- options --------------------------------------------------------------------------------------------


def check_storage(url: str) -> str:
    """A store URL the store can open: a known backend, and for SQLite a file in an existing folder."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from autopeft.store.urls import display_url

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(f"{display_url(url)!r} is not a database URL; accepted: sqlite:///FILE or "
                          "postgresql+psycopg://USER@HOST/DB", field="storage") from None
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not supported; accepted: {', '.join(BACKENDS)}", field="storage")
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as err:
        raise ConfigError(f"the driver of {parsed.drivername!r} is not installed ({err.name}); for PostgreSQL "
                          "install autopeft[postgres] and use postgresql+psycopg://", field="storage") from None
    except Exception as err:  # sqlalchemy raises assorted errors for an unknown driver name
        raise ConfigError(f"unknown driver {parsed.drivername!r} ({type(err).__name__})", field="storage") from None
    database = parsed.database
    if backend == "sqlite" and database not in (None, "", ":memory:"):
        path = Path(str(database)).expanduser()
        if path.is_dir():
            raise ConfigError(f"{path} is a folder; give a file, e.g. sqlite:///{path / 'autopeft.db'}",
                              field="storage")
        if not path.parent.is_dir():
            raise ConfigError(f"folder {path.parent} does not exist", field="storage")
    return url


def check_run_options(*, budget: float | None, max_time: float | None, workers: int | None, executor: str,
                      runs_dir: Path | str | None, require_budget: bool = True, ray_address: str | None = None,
                      gpus_per_trial: float | None = None, cpus_per_trial: float | None = None,
                      device: str | None = None, devices: str | None = None) -> RunOptions:
    """The options of one run of the loop; `require_budget=False` where the store holds one (resume).

    ``workers`` None is 1, or with ``executor="ray"`` what the cluster holds. The Ray options are checked
    here without a cluster; `check_ray_cluster` then checks them against the cluster itself. ``devices``
    (`--devices`) is the local pool's alone, not with ``device``, and names GPUs torch sees here.
    """
    from autopeft.engine.loop import Budget
    from autopeft.engine.ray_executor import check_address, check_cpus_per_trial, check_gpus_per_trial

    for value, field in ((budget, "budget"), (max_time, "max-time")):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise ConfigError(f"must be > 0 and finite, got {value}", field=field)
    if require_budget and budget is None and max_time is None:
        raise ConfigError("give a budget (--budget N full trials, or --max-time)", field="budget")
    if workers is None and executor != "ray":
        workers = 1
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"must be an integer >= 1, got {workers!r}", field="workers")
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; accepted: {', '.join(EXECUTORS)}", field="executor")
    ray_options: dict[str, Any] | None = None
    if executor == "ray":
        if device not in (None, "cpu"):
            raise ConfigError(f"with --executor ray a trial trains on the GPU Ray gives it (--gpus-per-trial); "
                              f"--device takes only cpu there, got {device!r}", field="device")
        ray_options = {"address": check_address(ray_address), "gpus_per_trial": check_gpus_per_trial(gpus_per_trial),
                       "cpus_per_trial": check_cpus_per_trial(1.0 if cpus_per_trial is None else cpus_per_trial)}
    else:
        for value, field in ((gpus_per_trial, "gpus-per-trial"), (cpus_per_trial, "cpus-per-trial")):
            if value is not None:
                raise ConfigError(f"applies to --executor ray only (this run uses {executor})", field=field)
    if executor == "inprocess" and workers != 1:
        raise ConfigError("the in-process executor runs one trial at a time; use --workers 1", field="workers")
    gpus = _check_devices(devices, executor=executor, device=device)
    runs = None if runs_dir is None else check_location(runs_dir, field="runs-dir")
    return RunOptions(Budget(trials=budget, seconds=max_time), workers, executor, runs, ray_options, gpus)


def _check_devices(devices: str | None, *, executor: str, device: str | None) -> tuple[str, ...] | None:
    """`--devices`: for the local pool only, not with `--device`, and only GPUs torch sees (else one line)."""
    from autopeft.train.resources import check_devices

    if devices is None:
        return None
    check_devices_fit(devices, kind=executor, device=device)
    return check_devices(devices)


def check_ray_cluster(run: RunOptions, storage: str) -> int:
    """Connect to the run's Ray cluster and check it can run it: the trials it holds at once, else `ConfigError`.

    A trial of ``gpus_per_trial`` and ``cpus_per_trial`` must fit on one node, and a SQLite store is refused
    when any node is on another machine (its trials could not reach the file).
    """
    from autopeft.engine.ray_executor import check_cluster, connect

    options = dict(run.executor_options or {})
    _, capacity = check_cluster(connect(options.get("address")), storage=storage,
                                gpus_per_trial=options.get("gpus_per_trial"),
                                cpus_per_trial=float(options.get("cpus_per_trial") or 1.0))
    return min(run.workers or capacity, capacity)


def check_study_options(*, name: str | None, strategy: str, seed: int, objectives: Sequence[str],
                        eta: float) -> tuple[str, ...]:
    """The options of a new study that need no file: its name, strategy, seed, objectives and eta."""
    from autopeft.search.rungs import validate_fidelities

    # `::` chains URLs in fsspec: under a URI runs folder (`s3://bucket/runs`) the name's trial folders would
    # be read as a chain of filesystems.
    if name is not None and (not _NAME.fullmatch(name) or name.strip() in ("", ".", "..") or name != name.strip()
                             or "::" in name):
        raise ConfigError(f"{name!r} is not a study name; accepted: 1-255 characters, no slashes, '::', control "
                          "characters or surrounding spaces, not . or ..", field="name")
    check_strategy(strategy)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"must be an integer in 0-{MAX_SEED}, got {seed!r}", field="seed")
    names = tuple(objectives)
    if not names:
        raise ConfigError("give at least one objective (score)", field="objectives")
    make_objectives(names, base_params=1)  # names only; the references need the model
    validate_fidelities(1, 1, eta)
    return names


# -- space and recipe -------------------------------------------------------------------------------------


def check_study(space_path: str | Path, recipe_path: str | Path, *, name: str | None = None,
                strategy: str = DEFAULT_STRATEGY, seed: int = 0, objectives: Sequence[str] = ("score",
                                                                                                "trainable_params"),
                eta: float = 3.0, budget: float | None = None, defaults: bool = True) -> CheckedStudy:
    """Everything a new study needs, loaded and checked; raises `AutopeftError` on the first problem.

    ``defaults``: the study proposes the space's `defaults` first (`SearchSpace.default_configs`).
    """
    from autopeft.train.recipe import load_recipe

    names = check_study_options(name=name, strategy=strategy, seed=seed, objectives=objectives, eta=eta)
    if budget is not None and (not math.isfinite(budget) or budget <= 0):
        raise ConfigError(f"must be > 0 and finite, got {budget}", field="budget")
    space_path, recipe_path = Path(space_path), Path(recipe_path)
    recipe = load_recipe(recipe_path)
    space, counter = checked_space(space_path, recipe, recipe_source=str(recipe_path))
    check_feasible(counter)
    task = check_task_data(recipe, source=str(recipe_path))
    seeds = tuple(space.default_configs(counter.num_layers)) if defaults else ()
    return CheckedStudy(space_path=space_path, recipe_path=recipe_path, space=space, recipe=recipe, counter=counter,
                        name=name, strategy=strategy, seed=seed, objectives=names, eta=eta, budget=budget,
                        seeds=seeds, chance=task.chance if task is not None else 0.0)


def checked_space(space_path: str | Path, recipe: TrialRecipe, *,
                  recipe_source: str | None = None) -> tuple[SearchSpace, ParamCounter]:
    """The space at `space_path`, compiled against the recipe's model, and its parameter counter.

    What `autopeft space check` reports on; errors from the model or the task (not the space) name the
    recipe file.
    """
    from autopeft.space.space import load_space
    from autopeft.train.counting import ParamCounter

    source = str(space_path)
    space = load_space(space_path)
    try:
        counter = ParamCounter.for_recipe(recipe, space, source=source)
    except ConfigError as err:
        if err.source is not None or recipe_source is None:
            raise
        raise ConfigError(err.message, source=recipe_source, field=err.field) from None
    check_space(space, counter)
    return space, counter


def check_space(space: SearchSpace, counter: ParamCounter) -> None:
    """Compile the space on the counter's model: every local configuration (`counter.bounds`; when one
    fails, each plan entry with the ends of what it reads, to name the space's field), each training
    setting's ends, and the two extreme configurations."""
    source = counter.source
    try:
        counter.bounds()  # every reachable local configuration through PeftPlan validation (field: plan.layer i)
    except ConfigError:
        for index, entry in enumerate(space.plan):  # a line naming the space's field, where one is to blame
            _check_entry(space, index, entry, source)
        raise
    _check_training(space, counter, source)
    for config in counter.bound_configs():
        space.compile(config, counter.num_layers, source=source)


def check_feasible(counter: ParamCounter) -> None:
    """Refuse a space whose constraints no configuration meets (the study would be empty)."""
    if counter.space.constraints and counter.feasible_bounds() is None:
        low, _ = counter.bounds()
        limit = counter.max_allowed()
        raise ConfigError(f"no configuration satisfies the constraints: the smallest trains {low:,} parameters "
                          f"({100 * low / counter.base_params:.3f}%), the constraints allow at most {limit:,}",
                          source=counter.source, field="constraints")


def check_task_data(recipe: TrialRecipe, *, source: str | None = None) -> TaskData | None:
    """Read a `files` or GLUE task now (missing, empty, malformed or non-UTF-8 files, one class), so a
    bad file stops the study before its first trial. `hf` datasets are left to the trial (a download): None."""
    from autopeft.train.tasks.loader import load_task

    if recipe.task.name == "hf":
        return None
    try:
        return load_task(recipe.task, recipe.base_dir)
    except ConfigError as err:
        if err.source is not None or source is None:
            raise
        raise ConfigError(err.message, source=source, field=err.field) from None


def _check_entry(space: SearchSpace, index: int, entry: PlanEntry, source: str | None) -> None:
    """Validate plan entry `index` as a method with every choice and both ends of every range it reads."""
    from pydantic import TypeAdapter, ValidationError

    from autopeft.peft.plan import MethodSpec

    params = {**space.global_params, **space.layers}
    refs = {key: value[1:] for key, value in entry.fields.items() if _is_ref(value)}
    domains: dict[str, list[Any]] = {}
    for ref in dict.fromkeys(refs.values()):
        ends = _ends(params[ref])
        domains[ref] = [v for v in ends if all(c.holds(v) for c in entry.when if c.param == ref)]
    adapter: TypeAdapter[Any] = TypeAdapter(MethodSpec)
    for combo in itertools.islice(itertools.product(*domains.values()), MAX_ENTRY_COMBINATIONS):
        values = dict(zip(domains, combo, strict=True))
        method = {key: values[refs[key]] if key in refs else value for key, value in entry.fields.items()}
        if method.get("method") in (None, "none"):
            continue
        try:
            adapter.validate_python(method)
        except ValidationError as err:
            raise _entry_error(space, index, refs, values, err, source) from None


def _entry_error(space: SearchSpace, index: int, refs: Mapping[str, str], values: Mapping[str, Any],
                 err: Any, source: str | None) -> ConfigError:
    """Name the space field that gave the bad value (`layers.rank`), else the plan entry's field."""
    from autopeft.peft.plan import METHOD_NAMES
    from autopeft.peft.roles import Role

    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = loc[1] if len(loc) > 1 else "method"
    message = first["msg"]
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        message = f"not a method; accepted: {', '.join(METHOD_NAMES)}"
    elif first["type"] == "enum":
        message = f"{first['input']!r} is not a role; accepted: {', '.join(r.value for r in Role)}"
    elif first["type"] == "extra_forbidden":
        message = f"{loc[0]} has no field {key!r}"
    what = "" if key == "method" else f" gives {loc[0]}.{key}"
    if key in refs:
        ref = refs[key]
        group = "training" if ref in space.training else "shared" if ref in space.shared else "layers"
        return ConfigError(f"{values[ref]!r}{what}: {message} (plan.{index})", source=source, field=f"{group}.{ref}")
    return ConfigError(message, source=source, field=f"plan.{index}.{key}")


def _check_training(space: SearchSpace, counter: ParamCounter, source: str | None) -> None:
    """Every searched training setting at its ends (a learning rate of 0 is refused by the trial's
    configuration, not by the space), compiled into the smallest configuration."""
    low_config, _ = counter.bound_configs()
    for name, param in space.training.items():
        if name not in low_config:
            continue  # inactive there
        for value in _ends(param):
            try:
                space.compile({**low_config, name: value}, counter.num_layers, source=source)
            except ConfigError as err:
                if err.field != name:
                    continue  # another parameter's (in)activity: the bounds check covers those
                raise ConfigError(f"{value!r}: {err.message}", source=source, field=f"training.{name}") from None


def _ends(param: Param) -> list[Any]:
    if param.choices is not None:
        return list(param.choices)
    low, high = param.int_range or param.float_range  # type: ignore[misc]
    return [low] if low == high else [low, high]


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and len(value) > 1
