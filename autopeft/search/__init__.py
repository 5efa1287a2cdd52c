"""Search: samplers, the multi-objective Hyperband scheduler, and Pareto utilities (no torch imports)."""

from autopeft.search.pareto import (
    Direction,
    Objective,
    TieBreak,
    crowding_distance,
    hypervolume,
    hypervolume_contributions,
    non_dominated_sort,
    pareto_front_mask,
    rank_for_promotion,
    reference_point,
    to_minimization,
)

__all__ = [
    "Direction",
    "Objective",
    "TieBreak",
    "crowding_distance",
    "hypervolume",
    "hypervolume_contributions",
    "non_dominated_sort",
    "pareto_front_mask",
    "rank_for_promotion",
    "reference_point",
    "to_minimization",
]
