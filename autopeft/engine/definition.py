"""What a study is, as the store keeps it: its space and recipe (as written), objectives and options.

The store holds the space and the recipe as the user's YAML mappings (plus where the recipe lived, so
that its relative paths still resolve), not as pickles: a study stays readable by any later version,
by the dashboard, and by `export`, and is rebuilt from the store alone on `study resume`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.search.pareto import Direction, Objective
from autopeft.space.space import SearchSpace

if TYPE_CHECKING:
    from autopeft.store.records import StudyRecord
    from autopeft.train.recipe import TrialRecipe

#: The objectives a study may use: the task's primary score, and the costs a trial reports.
SCORE = "score"
TRAINABLE_PARAMS = "trainable_params"
OBJECTIVE_DIRECTIONS: dict[str, Direction] = {
    SCORE: Direction.MAXIMIZE,
    TRAINABLE_PARAMS: Direction.MINIMIZE,
    "train_seconds": Direction.MINIMIZE,
    "peak_memory_mb": Direction.MINIMIZE,
}
DEFAULT_OBJECTIVES = (SCORE, TRAINABLE_PARAMS)


def objective_from_dict(data: Mapping[str, Any]) -> Objective:
    return Objective(name=str(data["name"]), direction=Direction(data["direction"]), reference=float(data["reference"]))


def objective_to_dict(objective: Objective) -> dict[str, Any]:
    return {"name": objective.name, "direction": objective.direction.value, "reference": objective.reference}


@dataclass(frozen=True)
class StudyDefinition:
    """Everything needed to (re)build a study's sampler, scheduler and trials, stored as plain JSON."""

    space: Mapping[str, Any]
    recipe: Mapping[str, Any]
    objectives: tuple[Objective, ...]
    recipe_dir: str
    space_path: str | None = None
    recipe_path: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # strategy options: eta, budget, workers, ...

    def search_space(self) -> SearchSpace:
        from autopeft.yamlio import validate

        return validate(SearchSpace, dict(self.space), source=self.space_path or "stored space")

    def trial_recipe(self) -> TrialRecipe:
        from autopeft.train.recipe import TrialRecipe
        from autopeft.yamlio import validate

        recipe = validate(TrialRecipe, dict(self.recipe), source=self.recipe_path or "stored recipe")
        recipe._source_dir = Path(self.recipe_dir)
        return recipe

    @property
    def max_fidelity(self) -> int:
        return int(self.recipe["fidelity"]["max"])

    @property
    def min_fidelity(self) -> int:
        return int(self.recipe["fidelity"]["min"])

    def objective(self, name: str) -> Objective | None:
        return next((o for o in self.objectives if o.name == name), None)

    # -- the store's JSON columns ------------------------------------------------------------------
    def space_json(self) -> dict[str, Any]:
        return {"path": self.space_path, "spec": dict(self.space)}

    def recipe_json(self) -> dict[str, Any]:
        return {"path": self.recipe_path, "dir": self.recipe_dir, "spec": dict(self.recipe),
                "options": dict(self.options)}

    def objectives_json(self) -> list[dict[str, Any]]:
        return [objective_to_dict(o) for o in self.objectives]

    @classmethod
    def from_record(cls, record: StudyRecord) -> StudyDefinition:
        space, recipe = dict(record.space or {}), dict(record.recipe or {})
        return cls(space=space.get("spec", {}), recipe=recipe.get("spec", {}),
                   objectives=tuple(objective_from_dict(o) for o in record.objectives or []),
                   recipe_dir=recipe.get("dir", "."), space_path=space.get("path"),
                   recipe_path=recipe.get("path"), options=recipe.get("options", {}))


def make_objectives(names: Sequence[str], *, base_params: int, chance: float = 0.0) -> tuple[Objective, ...]:
    """The study's objectives with their fixed hypervolume reference points.

    - ``score``: maximised from ``chance``, the task's score for always predicting the most common label
      (`TaskData.chance`), so a trial no better than that adds no volume and is not promoted for being small.
    - ``trainable_params``: minimised from the base model's parameter count (full fine-tuning).
    - ``train_seconds`` / ``peak_memory_mb``: minimised from very large values (1e6 s, 1e7 MB), so
      every finished trial counts; their hypervolumes compare between studies of one machine only.
    """
    from autopeft.errors import ConfigError

    references = {SCORE: float(chance), TRAINABLE_PARAMS: float(base_params), "train_seconds": 1e6,
                  "peak_memory_mb": 1e7}
    out = []
    for name in names:
        if name not in OBJECTIVE_DIRECTIONS:
            raise ConfigError(f"{name!r} is not an objective; accepted: {', '.join(OBJECTIVE_DIRECTIONS)}",
                              field="objectives")
        out.append(Objective(name, OBJECTIVE_DIRECTIONS[name], references[name]))
    if SCORE not in names:
        raise ConfigError("the objectives must include score", field="objectives")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives repeat: {', '.join(names)}", field="objectives")
    return tuple(out)
