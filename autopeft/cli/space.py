"""`autopeft space check`: validate a search space against a trial recipe's model and show what it spans."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from autopeft.cli.app import app, console
from autopeft.engine.strategy import DEFAULT_STRATEGY, STRATEGIES

if TYPE_CHECKING:
    from autopeft.space.space import SearchSpace
    from autopeft.train.counting import ParamCounter

space_app = typer.Typer(no_args_is_help=True, help="Inspect search spaces.")
app.add_typer(space_app, name="space")


@space_app.command("check")
def space_check(
    space: Annotated[Path, typer.Argument(help="Search-space YAML.")],
    trial: Annotated[Path, typer.Option("--trial", help="Trial recipe YAML (its model sets the layers).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the sampled configuration.")] = 0,
    strategy: Annotated[str, typer.Option("--strategy", help="The study's strategy, for its rung ladder and "
                                          f"proposals: {', '.join(STRATEGIES)}.")] = DEFAULT_STRATEGY,
    eta: Annotated[float, typer.Option("--eta", help="Hyperband reduction factor.")] = 3.0,
    budget: Annotated[float | None, typer.Option("--budget", help="The study's budget in full-fidelity trials: "
                                                 "warn when it is too small for the ladder or the model.")] = None,
) -> None:
    """Validate a space on the recipe's model (no weights loaded) and print its size, parameter range and
    what a study of it would do (the rung ladder, how long proposals stay random)."""
    from autopeft.engine.announce import proposed_seeds, recipe_plan
    from autopeft.engine.checks import checked_space
    from autopeft.train.recipe import load_recipe

    recipe = load_recipe(trial)
    recipe_plan(recipe, strategy, eta=eta, budget=budget)  # its options are checked first: they need no model
    loaded, counter = checked_space(space, recipe, recipe_source=str(trial))  # the checks `study run` makes
    defaults = proposed_seeds(loaded.default_configs(counter.num_layers), counter.feasible)
    plan = recipe_plan(recipe, strategy, eta=eta, budget=budget, seeds=len(defaults))
    report = {"model": recipe.model.name, **space_report(loaded, counter, seed=seed), "study": plan.as_json()}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        table = _report_table(report)
        for line in plan.lines():  # `rungs ...`, `proposals ...`, `warning: ...`: a row each
            key, _, text = line.partition(": ")
            table.add_row(key, text)
        console.print(table)


def space_report(space: SearchSpace, counter: ParamCounter, *, seed: int = 0) -> dict[str, Any]:
    """What `space check` prints, as plain data: sizes, exact parameter range, constraints, one sample."""
    dims = space.dimensions(counter.num_layers)
    low, high = counter.bounds()
    feasible = counter.feasible_bounds()
    config = space.sample(counter.num_layers, random.Random(seed))
    space.compile(config, counter.num_layers)  # the sampled point must compile, as a trial would
    n = counter.count(config)
    return {
        "space": space.name,
        "num_layers": counter.num_layers,
        "searched_layers": list(counter.searched_layers),
        "dimensions": len(dims),
        "conditional": sum(1 for p in dims.values() if p.when),
        "base_params": counter.base_params,
        "head_params": counter.head_params,
        "trainable_params": {**_range(low, high, counter.base_params), "exact": counter.bounds_exact},
        "feasible_trainable_params": None if feasible is None else _range(*feasible, counter.base_params),
        "constraints": [c.model_dump(exclude_none=True) for c in space.constraints],
        "sample": {"seed": seed, "config": space.as_written(config), "trainable_params": n,
                   "trainable_share": n / counter.base_params, "feasible": counter.feasible(config)},
    }


def _range(low: int, high: int | None, base: int) -> dict[str, Any]:
    return {"min": low, "max": high, "min_share": low / base, "max_share": None if high is None else high / base}


def _params(n: int | None, share: float | None) -> str:
    return "not determined" if n is None or share is None else f"{n:,} ({100 * share:.3f}%)"


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"search space {report['space']}", show_header=False)
    if "model" in report:
        table.add_row("model", str(report["model"]))
    layers = report["searched_layers"]
    span = f"{layers[0]}-{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else ",".join(
        map(str, layers)) if layers else "none"
    table.add_row("layers searched", f"{len(layers)} of {report['num_layers']} ({span})")
    table.add_row("dimensions", f"{report['dimensions']} ({report['conditional']} conditional)")
    table.add_row("base params", f"{report['base_params']:,} (head {report['head_params']:,} trains always)")
    rng = report["trainable_params"]
    exact = "" if rng["exact"] else " (over a grid of the int ranges)"
    table.add_row("trainable min", _params(rng["min"], rng["min_share"]))
    table.add_row("trainable max", _params(rng["max"], rng["max_share"]) + exact)
    for c in report["constraints"]:
        limit = (f"share <= {100 * c['max_trainable_share']:g}%" if "max_trainable_share" in c
                 else f"params <= {c['max_trainable_params']:,}" if "max_trainable_params" in c
                 else "peft can express the plan")
        table.add_row("constraint", f"{c['name']}: {limit}" if c.get("name") else limit)
    if report["constraints"]:
        feasible = report["feasible_trainable_params"]
        if feasible is None:
            table.add_row("allowed", "no configuration satisfies the constraints")
        else:
            table.add_row("allowed min", _params(feasible["min"], feasible["min_share"]))
            table.add_row("allowed max", _params(feasible["max"], feasible["max_share"]))
    sample = report["sample"]
    verdict = "allowed" if sample["feasible"] else "rejected by the constraints"
    table.add_row(f"sample (seed {sample['seed']})",
                  f"{_params(sample['trainable_params'], sample['trainable_share'])}, {verdict}")
    return table
