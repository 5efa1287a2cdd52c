"""The methods `benchmarks/search_efficiency.py` compares: ours, the peers, and the weaker variants.

Names only, with the peers' settings as the report states them; `search_efficiency` runs ours through the
study loop and `search_peers` runs the peers.
"""

from __future__ import annotations

from typing import Any

OURS = ("random", "hyperband", "tpe", "nsga2", "mobo", "mobo-hyperband")
DEFAULT_OURS = "mobo-hyperband"
PEERS = ("optuna-gp", "optuna-tpe", "optuna-nsga2", "syne-moasha", "random-search")
# Weaker settings, for checking that the peers above are the stronger ones (not run by default).
VARIANTS = ("optuna-gp-flat", "optuna-nsga2-flat", "mobo-hyperband-mf", "mobo-hyperband-hv", "mobo-hyperband-local",
            "mobo-hyperband-stopped")
#: Our strategies with an option, measured before it becomes a default: name -> (strategy, `StrategyOptions`).
OUR_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mobo-hyperband-mf": ("mobo-hyperband", {"sampler": {"multi_fidelity": True}}),  # one GP over every rung
    # Promotion cuts a front by hypervolume contribution from the chance reference instead of crowding.
    "mobo-hyperband-hv": ("mobo-hyperband", {"tie_break": "hypervolume"}),
    # Local search around the front: most of the acquisition's pool mutates the front (default 512 + 256).
    "mobo-hyperband-local": ("mobo-hyperband", {"sampler": {"pool_size": 128, "num_mutations": 640}}),
    # Proposals that know the scheduler: trials it stopped count at the top rung at their last score.
    "mobo-hyperband-stopped": ("mobo-hyperband", {"sampler": {"stopped_at_last_score": True}}),
}
QUICK_METHODS = ("random", "hyperband", "optuna-tpe", "syne-moasha", "random-search")

#: How each peer (and weaker variant) is set up, as the report says it.
SETTINGS = {
    "optuna-gp": "GPSampler(seed) defaults (log-EHVI, 10 start-up trials, noisy); conditional space; "
                 "full fidelity",
    "optuna-gp-flat": "as optuna-gp over a flat space (every parameter in every trial): weaker",
    "optuna-nsga2-flat": "as optuna-nsga2 over a flat space: weaker",
    "optuna-tpe": "TPESampler(multivariate=True, group=True, seed), 10 start-up trials; conditional space; "
                  "full fidelity",
    "optuna-nsga2": "NSGAIISampler(population_size=budget/3, seed); conditional space; full fidelity",
    "syne-moasha": "MOASHA(non-dominated sort, grace period = lowest fidelity, reduction factor = eta, "
                   "1 bracket), one worker reporting at every ladder step; flat space",
    "random-search": "uniform random configurations at full fidelity",
}
