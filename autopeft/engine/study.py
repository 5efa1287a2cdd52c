"""Creating, running and resuming studies: the Python API behind `autopeft study ...`.

    definition = new_study(store, space_path, recipe_path, strategy="mobo-hyperband", seed=0)
    summary = run_study(store, definition.name, budget=Budget(trials=20), workers=2)

Everything a run needs is rebuilt from the store (`StudyDefinition.from_record`), so `run_study` on
an existing study resumes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from autopeft.engine.checks import CheckedStudy, check_study
from autopeft.engine.definition import DEFAULT_OBJECTIVES, TRAINABLE_PARAMS, StudyDefinition, make_objectives
from autopeft.engine.executors import InProcessExecutor, Runner, make_executor
from autopeft.engine.lease import DriverLease, FaultPolicy
from autopeft.engine.loop import Budget, StudyLoop, StudySummary
from autopeft.engine.paths import runs_dir_for
from autopeft.engine.progress import Display
from autopeft.engine.strategy import (
    DEFAULT_STRATEGY,
    StrategyOptions,
    make_sampler_for,
    make_scheduler,
)
from autopeft.errors import ConfigError
from autopeft.store import Lease, Store
from autopeft.train.storage import check_location


def default_study_name(space_name: str, recipe_name: str) -> str:
    return f"{recipe_name}-{space_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def new_study(store: Store, space_path: str | Path, recipe_path: str | Path, *, name: str | None = None,
              strategy: str = DEFAULT_STRATEGY, seed: int = 0, objectives: tuple[str, ...] = DEFAULT_OBJECTIVES,
              eta: float = 3.0, budget: float | None = None, lease: Lease | None = None) -> tuple[str, StudyDefinition]:
    """Check every input (`engine.checks.check_study`), then create the study row (nothing runs yet)."""
    checked = check_study(space_path, recipe_path, name=name, strategy=strategy, seed=seed, objectives=objectives,
                          eta=eta, budget=budget)
    return create_study(store, checked, lease=lease)


def create_study(store: Store, checked: CheckedStudy, *, lease: Lease | None = None) -> tuple[str, StudyDefinition]:
    """Write the row of a study whose inputs passed `check_study`: the only write a new study makes.

    With ``lease``, the study is created held by that driver, so no other driver can start it first.
    """
    from autopeft.yamlio import read_yaml

    definition = StudyDefinition(
        space=read_yaml(checked.space_path), recipe=read_yaml(checked.recipe_path),
        objectives=make_objectives(checked.objectives, base_params=checked.counter.base_params, chance=checked.chance),
        recipe_dir=str(checked.recipe.base_dir), space_path=str(checked.space_path),
        recipe_path=str(checked.recipe_path),
        options={"strategy": checked.strategy, "seed": checked.seed, "eta": checked.eta, "budget": checked.budget,
                 "seeds": [{"name": name, "config": config} for name, config in checked.seeds]})
    study_name = checked.name or default_study_name(checked.space.name, checked.recipe.name)
    store.create_study(study_name, space=definition.space_json(), recipe=definition.recipe_json(),
                       objectives=definition.objectives_json(), strategy=checked.strategy, seed=checked.seed,
                       lease=lease)
    return study_name, definition


def seed_configs(definition: StudyDefinition) -> list[dict[str, Any]]:
    """The configurations the study proposes first (kept in its options when it was created)."""
    return [dict(seed["config"]) for seed in definition.options.get("seeds") or []]


def seed_names(definition: StudyDefinition) -> dict[Any, str]:
    """Configuration (`config_key`) -> the name of the seed it is, to label those trials in a front."""
    from autopeft.space.encoding import config_key

    return {config_key(seed["config"]): str(seed["name"]) for seed in definition.options.get("seeds") or []}


def run_study(store: Store, name: str, *, budget: Budget | None = None, workers: int | None = 1,
              executor: str = "local", runs_dir: Path | str | None = None, display: Display | None = None,
              runner: Runner | None = None, resume: bool = False, force: bool = False,
              policy: FaultPolicy | None = None, lease: Lease | None = None, threads: int | None = None,
              device: str | None = None, executor_options: Mapping[str, Any] | None = None,
              devices: Sequence[str] | None = None) -> StudySummary:
    """Run (or resume) study ``name`` from the store until its budget is spent.

    ``runs_dir``: where trial checkpoints go, a local folder or a URI fsspec knows (`train.storage`);
    default `autopeft_runs/` beside the SQLite file.

    ``executor_options`` go to the Ray executor (``address``, ``gpus_per_trial``, ``cpus_per_trial``); there
    ``workers`` None means what the cluster holds.

    ``threads`` and ``device`` (`--threads`, `--device`) apply to every trial of this run; by default a
    trial gets its recipe's, and a pool's trials split the cores this process may use between them.
    ``devices`` (`--devices`, cuda:N names): the local pool gives each trial the least busy of them;
    without them, a pool on a machine where torch sees several GPUs spreads trials that would train on
    `auto` or `cuda` over all of them (`train.resources.default_devices`).

    The driver first takes the study's lease (`DriverLease`): a study run by a live driver is refused
    with `LeaseHeldError` naming it, unless ``force``; a stale lease (a crashed driver) is taken over.
    """
    policy = policy or FaultPolicy()
    with DriverLease(store, name, lease or Lease.for_this_process(), ttl=policy.lease_ttl, force=force) as held:
        return _run_held(store, name, held, budget=budget, workers=workers, executor=executor, runs_dir=runs_dir,
                         display=display, runner=runner, resume=resume, policy=policy, threads=threads,
                         device=device, executor_options=executor_options, devices=devices)


def _run_held(store: Store, name: str, held: DriverLease, *, budget: Budget | None, workers: int | None,
              executor: str, runs_dir: Path | str | None, display: Display | None, runner: Runner | None,
              resume: bool, policy: FaultPolicy, threads: int | None, device: str | None,
              executor_options: Mapping[str, Any] | None = None,
              devices: Sequence[str] | None = None) -> StudySummary:
    from autopeft.engine.worker import run_trial
    from autopeft.train.counting import ParamCounter
    from autopeft.train.resources import default_devices

    record = store.get_study(name)
    definition = StudyDefinition.from_record(record)
    options = dict(definition.options)
    if budget is None or (budget.trials is None and budget.seconds is None):
        stored = options.get("budget")
        budget = replace(budget or Budget(), trials=float(stored)) if stored else (budget or Budget())
    if budget.trials is None and budget.seconds is None:
        raise ConfigError("give a budget (--budget N full trials, or --max-time)", field="budget")
    if budget.trials is not None and budget.trials != options.get("budget"):
        # A resume with a new --budget keeps it: `study show`, the dashboard and the next resume read it there.
        options["budget"] = budget.trials
        definition = replace(definition, options=options)
        store.set_study_recipe(name, definition.recipe_json(), lease=held.owner)
    space, recipe = definition.search_space(), definition.trial_recipe()
    counter = ParamCounter.for_recipe(recipe, space)
    dims = space.dimensions(counter.num_layers)
    seed = int(record.seed or 0)
    strategy = StrategyOptions(eta=float(options.get("eta", 3.0)))
    known: dict[str, Any] = {TRAINABLE_PARAMS: counter.count} if definition.objective(TRAINABLE_PARAMS) else {}
    seeds = seed_configs(definition)
    sampler = make_sampler_for(record.strategy, dims, definition.objectives, seed=seed, feasible=counter.feasible,
                               known=known, options=strategy, seeds=seeds)

    def scheduler_factory(propose: Any) -> Any:
        return make_scheduler(record.strategy, propose, definition.objectives, min_fidelity=definition.min_fidelity,
                              max_fidelity=definition.max_fidelity, seed=seed, options=strategy, seeds=seeds)

    def compile_config(config: Any) -> dict[str, Any]:
        return space.compile(config, counter.num_layers).model_dump(mode="json", exclude_none=True)

    # A local folder or a URI (`train.storage`), checked again for API callers (the CLI checked it first).
    runs = runs_dir_for(store.url) if runs_dir is None else check_location(runs_dir, field="runs_dir")
    ray_options = {"storage": store.url, **(executor_options or {})} if executor == "ray" else None
    if executor == "local" and not devices:  # several GPUs here and trials bound for cuda: one per GPU in turn
        devices = default_devices(device or recipe.training.device)
        device = None if devices else device  # each trial's cuda:N now comes from the plan
    pool = make_executor(executor, workers, trial_timeout=policy.trial_timeout, threads=threads, device=device,
                         options=ray_options, devices=devices)
    if not isinstance(pool, InProcessExecutor):
        import torch

        # The workers hold the cores. BO's small matrices gain nothing from more threads here and lose
        # badly to oversubscription: with 2 cores and 2 busy workers, one acquisition step took ~50 s
        # with torch's default 2 threads and 0.2 s with 1.
        torch.set_num_threads(1)
    loop = StudyLoop(store=store, name=name, definition=definition, scheduler_factory=scheduler_factory,
                     sampler=sampler, executor=pool, runner=runner or run_trial,
                     compile_config=compile_config, budget=budget, runs_dir=runs,
                     display=display, policy=policy, lease=held)
    has_trials = bool(store.trials(name))
    return loop.run(resume=resume or has_trials)
