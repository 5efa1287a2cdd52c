"""Search spaces: parameters (global and per layer), conditions, and the plan template they fill."""

from autopeft.space.config import TRAINING_KEYS, TrialConfig
from autopeft.space.params import Condition, Param
from autopeft.space.space import Constraint, PlanEntry, SearchSpace, load_space

__all__ = ["TRAINING_KEYS", "Condition", "Constraint", "Param", "PlanEntry", "SearchSpace", "TrialConfig",
           "load_space"]
