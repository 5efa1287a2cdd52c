"""What every method of `benchmarks/search_efficiency.py` searches, and how its compute is counted.

`Problem`: a space, the exact trainable-parameter count and a score over configuration and fidelity
(`SyntheticProblem`, a formula for CI; `BlackboxProblem` in `peft_blackbox/surrogate.py`, a surrogate of
real training). `Tracker`: the compute a run spent, in full-fidelity trial equivalents, and its anytime
hypervolume.
"""

from __future__ import annotations

import abc
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.search.pareto import Objective  # noqa: E402
from autopeft.space.params import Param  # noqa: E402

# -- the problem --------------------------------------------------------------------------------------

def hypervolume_share(points: Sequence[tuple[float, float]], score_floor: float, max_params: float,
                      score_ceiling: float = 1.0) -> float:
    """Hypervolume of (score, params) points from (score_floor, max_params), as a share of the box from that
    point to (score_ceiling, 0 parameters): every benchmark's measure of a front (`Problem.hv`, real studies)."""
    if not points:
        return 0.0
    import numpy as np

    from autopeft.search.pareto import hypervolume, pareto_front_mask

    minimised = np.array([[-s, p] for s, p in points])
    mask = pareto_front_mask(minimised)
    volume = float(hypervolume(minimised[mask], np.array([-score_floor, max_params])))
    return volume / ((score_ceiling - score_floor) * max_params)


class Problem(abc.ABC):
    """What a method searches: a space, the exact parameter count, a score over configuration and fidelity.

    Implementations: `SyntheticProblem` (a formula, for CI) and `benchmarks/peft_blackbox/surrogate.py`'s
    `BlackboxProblem` (a surrogate fitted on real training runs); the harness takes both unchanged.
    """

    name: str
    dims: Mapping[str, Param]  # the space's dimensions (autopeft `Param`s, conditional ones included)
    objectives: tuple[Objective, ...]  # ("score" max, "trainable_params" min) for the study loop
    min_fidelity: int
    max_fidelity: int
    eta: float  # the fidelity ladder of successive halving: min, min * eta, ..., max
    report_fidelities: tuple[int, ...]  # where a learning curve can be read (peers that report per step)
    score_floor: float  # the reference point's score: chance
    score_ceiling: float = 1.0  # the best score possible (hypervolumes are shares of the box up to it)
    max_params: float  # the reference point's parameter count: the space's largest
    full_trial_seconds: float  # nominal training seconds of one full-fidelity trial (for wall time)
    defaults: tuple[dict[str, Any], ...] = ()  # the space's `defaults`, which our strategies propose first

    @abc.abstractmethod
    def score(self, config: Mapping[str, Any], fidelity: int, seed: int) -> float:
        """The score of ``config`` trained to ``fidelity``; ``seed`` is the run's (a surrogate's noise draw)."""

    @abc.abstractmethod
    def params(self, config: Mapping[str, Any]) -> int:
        """The exact trainable-parameter count."""

    def feasible(self, config: Mapping[str, Any]) -> bool:
        return True

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly random configuration (log-uniform on log ranges); inactive parameters absent."""
        from autopeft.space.space import _draw

        config: dict[str, Any] = {}
        for name, param in self.dims.items():
            if param.active(config):
                config[name] = _draw(param, rng)
        return config

    def hv(self, points: Sequence[tuple[float, float]]) -> float:
        """Hypervolume of (score, params) points from (score_floor, max_params), as a share of the box
        from that point to (score_ceiling, 0 parameters)."""
        return hypervolume_share(points, self.score_floor, self.max_params, self.score_ceiling)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dimensions": len(self.dims),
                "fidelity": {"min": self.min_fidelity, "max": self.max_fidelity, "eta": self.eta},
                "reference_point": {"score": self.score_floor, "trainable_params": self.max_params},
                "hv_unit": {"score_ceiling": self.score_ceiling, "note": "hypervolume as a share of the box "
                            "from the reference point to (score_ceiling, 0 parameters)"},
                "full_trial_seconds": self.full_trial_seconds}


class SyntheticProblem(Problem):
    """`benchmarks/strategies.py`'s problem: `mixed` on MiniLM-L6, exact counts, a formula for the score.

    Its noise is a fixed function of configuration and fidelity (the seed is not used): reading a
    configuration twice gives the same score, like replaying one real run.
    """

    name = "synthetic"

    def __init__(self) -> None:
        from autopeft.engine.definition import make_objectives
        from benchmarks import strategies

        self._s = strategies
        inner = strategies.Problem()
        self._inner = inner
        self.dims = inner.dims
        self.objectives = inner.objectives
        self.counter = inner.counter
        self.min_fidelity, self.max_fidelity, self.eta = strategies.MIN_F, strategies.MAX_F, strategies.ETA
        step = self.min_fidelity
        ladder = set(range(step, self.max_fidelity + 1, step))
        ladder |= {round(self.min_fidelity * self.eta ** k) for k in range(4)
                   if self.min_fidelity * self.eta ** k <= self.max_fidelity}
        self.report_fidelities = tuple(sorted(ladder))
        self.score_floor = 0.5
        self.objectives = make_objectives(("score", "trainable_params"), base_params=self.counter.base_params,
                                          chance=self.score_floor)
        self.defaults = tuple(config for _, config in inner.space.default_configs(inner.num_layers))
        self.max_params = inner.max_params
        self.full_trial_seconds = 90.0  # MiniLM-L6 on 16,384 SST-2 examples at about 180 examples/s (CPU)

    def score(self, config: Mapping[str, Any], fidelity: int, seed: int) -> float:
        return self._s.score_at(dict(config), fidelity, self._inner.num_layers)

    def params(self, config: Mapping[str, Any]) -> int:
        return int(self.counter.count(dict(config)))

    def feasible(self, config: Mapping[str, Any]) -> bool:
        return bool(self.counter.feasible(dict(config)))


def _blackbox(space: str, task: str) -> Callable[[], Problem]:
    """A factory of the surrogate problem (imported when built: it reads the table and the GLUE files)."""
    def build() -> Problem:
        from benchmarks.peft_blackbox.surrogate import BlackboxProblem

        return BlackboxProblem(space, task)
    return build


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "synthetic": SyntheticProblem,
    **{f"blackbox-{space}-{task}": _blackbox(space, task)
       for space in ("lora", "mixed") for task in ("sst2", "mrpc", "mrpc-long")},
}


# -- accounting ---------------------------------------------------------------------------------------

class Tracker:
    """Compute spent, the full-fidelity points found, and the anytime events (compute, hv, seconds).

    Seconds are the method's own (proposals, scheduling, the loop and its store), measured; the
    tracker's hypervolume updates are taken out.
    """

    def __init__(self, problem: Problem, budget: float) -> None:
        self.problem, self.budget = problem, budget
        self.compute = 0.0
        self.points: list[tuple[float, float]] = []
        self.configs: list[Mapping[str, Any]] = []  # the configuration of each of `points`
        self.events: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        self.jobs = 0
        self._harness = 0.0
        self._t0 = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self._t0 - self._harness

    def evaluate(self, config: Mapping[str, Any], start: int, fidelity: int, seed: int) -> tuple[float, float]:
        """Train ``config`` from ``start`` to ``fidelity``: charge the compute, record a full-fidelity point."""
        score = self.problem.score(config, fidelity, seed)
        params = float(self.problem.params(config))
        started = time.perf_counter()
        self.compute += (fidelity - start) / self.problem.max_fidelity
        self.jobs += 1
        hv = self.events[-1][1]
        if fidelity >= self.problem.max_fidelity:
            self.points.append((score, params))
            self.configs.append(config)
            hv = self.problem.hv(self.points)
        self._harness += time.perf_counter() - started
        self.events.append((self.compute, hv, self.seconds()))
        return score, params

    @property
    def spent(self) -> bool:
        return self.compute >= self.budget - 1e-9

    def front_configs(self) -> list[dict[str, Any]]:
        """The configurations on the full-fidelity front, each once: what a warm start seeds a study with."""
        import numpy as np

        from autopeft.search.pareto import pareto_front_mask
        from autopeft.space.encoding import config_key

        if not self.points:
            return []
        mask = pareto_front_mask(np.array([[-s, p] for s, p in self.points]))
        unique = {config_key(c): dict(c) for c, on in zip(self.configs, mask, strict=True) if on}
        return list(unique.values())

    def result(self) -> dict[str, Any]:
        """Events up to the budget, kept where the hypervolume changes (and the last one)."""
        inside = [e for e in self.events if e[0] <= self.budget + 1e-9]
        kept = [e for i, e in enumerate(inside) if i == 0 or e[1] != inside[i - 1][1] or i == len(inside) - 1]
        return {"events": [[round(c, 6), h, round(s, 4)] for c, h, s in kept],
                "final_hv": inside[-1][1], "compute": inside[-1][0], "seconds": inside[-1][2],
                "jobs": len(inside) - 1, "full_trials": len(self.points)}
