"""Proposals that start from given configurations: what practitioners try first, or another study's front.

A study's first proposals are otherwise quasi-random, so its front can end up worse than the usual
choices (LoRA r=8 on query and value, IA3, the head alone) that a user would have tried by hand. The
`SeededSampler` hands out such configurations first (the space's ``defaults``, or a warm start's front)
and then whatever the sampler it wraps proposes, which sees the seeds' results like any others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autopeft.search.history import Config, History
from autopeft.search.samplers.base import Sampler
from autopeft.search.samplers.common import seen_keys, with_pending
from autopeft.space.encoding import config_key


class SeededSampler(Sampler):
    """``seeds`` first, in order, then ``inner``'s proposals.

    A seed is skipped once a configuration equal to it is in the history (a result, in flight, or failed):
    so a resumed study proposes no seed twice, and a seed the user already ran counts as tried. Seeds that
    break the space's constraints (``inner.feasible``) are never proposed.
    """

    def __init__(self, inner: Sampler, seeds: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(inner.dims, inner.objectives, seed=inner.seed, feasible=inner.feasible, known=inner.known)
        self.inner = inner
        self.seeds = [dict(s) for s in seeds]
        self.slow = inner.slow

    def waiting(self, history: History) -> list[Config]:
        """The seeds not yet in ``history``, in order."""
        seen = seen_keys(history)
        return [dict(s) for s in self.seeds if config_key(s) not in seen and self.feasible(s)]

    def propose(self, n: int, history: History) -> list[Config]:
        return self._take(n, history, self.inner.propose)

    def cheap_propose(self, n: int, history: History) -> list[Config]:
        return self._take(n, history, self.inner.cheap_propose)

    def _take(self, n: int, history: History, rest: Any) -> list[Config]:
        first = self.waiting(history)[:n]
        if len(first) >= n:
            return first
        # The wrapped sampler sees the seeds handed out now as in flight, so it proposes none of them again.
        return first + list(rest(n - len(first), with_pending(history, first)))
