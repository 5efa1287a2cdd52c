"""Search: samplers, the multi-objective Hyperband scheduler, and Pareto utilities (no torch imports)."""

from autopeft.search.full_fidelity import FullFidelity
from autopeft.search.hyperband import MultiObjectiveASHA, MultiObjectiveHyperband
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
from autopeft.search.rungs import (
    bracket_distribution,
    bracket_rungs,
    current_rung,
    is_promotable,
    max_bracket,
    num_brackets,
    promotion_quota,
    rung_levels,
)
from autopeft.search.scheduler import (
    Decision,
    ParetoRanking,
    Ranking,
    RestoredTrial,
    Scheduler,
    Suggestion,
    SuggestionKind,
)

__all__ = [
    "Decision",
    "Direction",
    "FullFidelity",
    "MultiObjectiveASHA",
    "MultiObjectiveHyperband",
    "Objective",
    "ParetoRanking",
    "Ranking",
    "RestoredTrial",
    "Scheduler",
    "Suggestion",
    "SuggestionKind",
    "TieBreak",
    "bracket_distribution",
    "bracket_rungs",
    "crowding_distance",
    "current_rung",
    "hypervolume",
    "hypervolume_contributions",
    "is_promotable",
    "max_bracket",
    "non_dominated_sort",
    "num_brackets",
    "pareto_front_mask",
    "promotion_quota",
    "rank_for_promotion",
    "reference_point",
    "rung_levels",
    "to_minimization",
]
