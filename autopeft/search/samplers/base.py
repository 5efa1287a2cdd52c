"""The sampler interface: propose ``n`` configurations given the history of a study."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

from autopeft.search.history import Config, History
from autopeft.search.pareto import Objective
from autopeft.space.params import Param

#: Objectives known exactly before a trial trains (the trainable-parameter count), by name.
KnownObjective = Callable[[Mapping[str, Any]], float]
#: Whether a configuration satisfies the space's constraints.
Feasible = Callable[[Mapping[str, Any]], bool]


class Sampler(abc.ABC):
    """Proposes configurations; stateless between calls apart from its seed (see `History`).

    Args:
        dims: the expanded parameters of the space (`SearchSpace.dimensions(num_layers)`), in order.
        objectives: the study's objectives, with directions and reference points.
        seed: makes proposals reproducible for a given history.
        feasible: rejects configurations that break a constraint; proposals always satisfy it.
        known: objectives computed exactly from a configuration, e.g. ``{"trainable_params": count}``;
            model-based samplers use them instead of learning them.
    """

    #: Proposing may take seconds (a model fit): the study loop then proposes ahead, in the background.
    slow: bool = False

    def __init__(self, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None) -> None:
        self.dims = dict(dims)
        self.objectives = tuple(objectives)
        self.seed = seed
        self.feasible: Feasible = feasible or (lambda _config: True)
        self.known = dict(known or {})

    @abc.abstractmethod
    def propose(self, n: int, history: History) -> list[Config]:
        """``n`` new configurations (fewer only if the space has no more feasible ones)."""

    def cheap_propose(self, n: int, history: History) -> list[Config]:
        """Proposals in milliseconds, for a free worker while a slow `propose` is still running (its own by default).

        Called from the loop's thread while `propose` may run in another, so it must share no mutable state
        with `propose`.
        """
        return self.propose(n, history)
