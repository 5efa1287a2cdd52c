"""`MOBOSampler`: multi-objective Bayesian optimisation with qLogNEHVI (BoTorch), as AutoPEFT does.

Per call: a GP (``MixedSingleTaskGP`` when the space has categorical columns, else ``SingleTaskGP``;
outcomes standardised) is fitted to the *learned* objectives (the task score) at the highest fidelity
with at least ``min_points`` results. The *known* objectives (the exact trainable-parameter count) are
not learned: a ``GenericDeterministicModel`` computes them from the configuration each row encodes,
and sits beside the GP in a ``ModelList``, so the hypervolume improvement is measured with exact
costs. qLogNEHVI is maximised over a discrete pool of feasible, unseen configurations (random draws
plus mutations of the current front, see `pool`) by ``optimize_acqf_discrete`` with ``q = n``
(sequential greedy), with pending configurations as ``X_pending`` so a batch spreads out. With a
single objective it is qLogNEI. Until ``min_points`` results exist, proposals come from the
`RandomSampler`.

BoTorch maximises, so every objective is flipped to "larger is better" and divided by a positive
scale (its reference value's size or its largest observed size); hypervolume rankings do not change
under such scaling, and parameter counts in the millions then sit beside scores in [0, 1].
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from autopeft.search.history import Config, History, Observation
from autopeft.search.pareto import Direction, Objective
from autopeft.search.samplers.base import Feasible, KnownObjective, Sampler
from autopeft.search.samplers.common import derive_seed, front, seen_keys, with_pending
from autopeft.search.samplers.pool import candidate_pool
from autopeft.search.samplers.random import RandomSampler
from autopeft.space.encoding import SpaceEncoder, config_key
from autopeft.space.params import Param

logger = logging.getLogger(__name__)


def _fidelity_feature(fidelity: int | None, target: int | None) -> float:
    """A fidelity as a GP input in (0, 1]: its log over the target's (1 at the fidelity proposals are for)."""
    if not fidelity or not target or target <= 1:
        return 1.0
    return max(0.0, math.log(fidelity)) / math.log(target)


class _KnownValues:
    """Known objectives of encoded rows (scaled, maximisation convention), cached by the row's bytes."""

    def __init__(self, encoder: SpaceEncoder, fns: Sequence[KnownObjective], signs: Sequence[float],
                 width: int | None = None) -> None:
        self.encoder = encoder
        self.width = width  # the encoding's columns; a multi-fidelity row has one more (the fidelity)
        self.fns = list(fns)
        self.signs = np.asarray(signs, dtype=np.float64)
        self.scales = np.ones(len(self.fns), dtype=np.float64)
        self._raw: dict[bytes, np.ndarray] = {}

    def add(self, config: Mapping[str, Any]) -> np.ndarray:
        row = self.encoder.encode(config)
        raw = np.array([float(fn(config)) for fn in self.fns], dtype=np.float64)
        self._raw[row.tobytes()] = raw
        return raw

    def raw(self, row: np.ndarray) -> np.ndarray:
        key = np.ascontiguousarray(row, dtype=np.float64).tobytes()
        if key not in self._raw:
            self._raw[key] = self.add(self.encoder.decode(row))
        return self._raw[key]

    def __call__(self, X: Any) -> Any:
        import torch

        flat = X.detach().reshape(-1, X.shape[-1]).cpu().numpy()
        if self.width is not None:
            flat = flat[:, :self.width]
        values = np.array([self.raw(row) for row in flat]).reshape(len(flat), len(self.fns))
        scaled = values * self.signs / self.scales
        return torch.as_tensor(scaled, dtype=X.dtype, device=X.device).reshape(*X.shape[:-1], len(self.fns))


class MOBOSampler(Sampler):
    """qLogNEHVI over a candidate pool; a GP for learned objectives, exact values for known ones."""

    slow = True  # a GP fit and an acquisition over the pool: seconds, tens on a busy laptop

    def __init__(self, dims: Mapping[str, Param], objectives: tuple[Objective, ...], *, seed: int = 0,
                 feasible: Feasible | None = None, known: Mapping[str, KnownObjective] | None = None,
                 min_points: int = 8, pool_size: int = 512, num_mutations: int = 256,
                 mc_samples: int = 64, fit_maxiter: int = 50, multi_fidelity: bool = False,
                 stopped_at_last_score: bool = False) -> None:
        super().__init__(dims, objectives, seed=seed, feasible=feasible, known=known)
        #: Fit one GP on every rung's results with the fidelity as an input, and propose for the highest
        #: fidelity reached, so low-rung results guide proposals as soon as there are ``min_points`` of them
        #: in all (and a promoted trial's whole curve informs the model), not per rung.
        self.multi_fidelity = multi_fidelity
        #: Single-fidelity model: a trial the scheduler left below the highest fidelity reached (paused or
        #: pruned, not running) counts there at its last score, a pessimistic value (scores grow with
        #: training): what Hyperband stopped is information, and the model starts once results in all reach
        #: ``min_points``. Measured on the blackbox before it may become a default.
        self.stopped_at_last_score = stopped_at_last_score
        self.encoder = SpaceEncoder(self.dims)
        self.min_points = max(2, int(min_points))
        self.pool_size = pool_size
        self.num_mutations = num_mutations
        self.mc_samples = mc_samples
        self.fit_maxiter = fit_maxiter
        self.learned = tuple(o for o in self.objectives if o.name not in self.known)
        self.known_objectives = tuple(o for o in self.objectives if o.name in self.known)
        self._fallback = RandomSampler(dims, objectives, seed=seed, feasible=feasible, known=known)

    def propose(self, n: int, history: History) -> list[Config]:
        if n <= 0:
            return []
        if self.multi_fidelity:
            latest = {(o.trial, o.fidelity): o for o in history.observations}  # a re-report replaces the first
            points = [o for o in latest.values() if self._usable(o)]
            fidelity = max((o.fidelity for o in points), default=None)
        elif self.stopped_at_last_score:
            fidelity = max((o.fidelity for o in history.observations), default=None)
            points = [o for o in self._with_stopped(history, fidelity) if self._usable(o)]
        else:
            fidelity, points = history.highest_fidelity(self.min_points)
            points = [o for o in points if self._usable(o)]
        if len(points) < self.min_points:
            logger.info("mobo: %d usable results (< min_points=%d); proposing at random", len(points),
                        self.min_points)
            return self._fallback.propose(n, history)
        import torch
        from linear_operator.utils.warnings import NumericalWarning

        with torch.random.fork_rng(), warnings.catch_warnings():
            # repeated configurations (small spaces, re-evaluations) make the Cholesky add jitter: expected
            warnings.simplefilter("ignore", NumericalWarning)
            torch.manual_seed(derive_seed(self.seed, history.num_trials, 3))
            out = self._propose_bo(n, history, fidelity, points)
        if len(out) < n:
            out += self._fallback.propose(n - len(out), with_pending(history, out))
        return out

    @staticmethod
    def _with_stopped(history: History, fidelity: int | None) -> list[Observation]:
        """The results at ``fidelity``, plus every other trial not running at its last result, moved there."""
        if fidelity is None:
            return []
        reached = {o.trial: o for o in history.at_fidelity(fidelity)}
        running = {config_key(c) for c in history.pending}
        last: dict[int, Observation] = {}
        for obs in history.observations:  # the highest rung each trial reported (the latest report there)
            if obs.trial not in reached and (obs.trial not in last or obs.fidelity >= last[obs.trial].fidelity):
                last[obs.trial] = obs
        stopped = [replace(o, fidelity=fidelity) for o in last.values() if config_key(o.config) not in running]
        return [*reached.values(), *stopped]

    def cheap_propose(self, n: int, history: History) -> list[Config]:
        """Scrambled Sobol proposals (the random sampler's, stateless: safe beside a running `propose`)."""
        return self._fallback.propose(n, history)

    def _usable(self, obs: Observation) -> bool:
        values = [obs.objectives.get(o.name) for o in self.learned]
        return self.encoder.is_valid(obs.config) and all(
            v is not None and math.isfinite(float(v)) for v in values)

    def _propose_bo(self, n: int, history: History, fidelity: int | None,
                    points: list[Observation]) -> list[Config]:
        import torch
        from botorch.optim import optimize_acqf_discrete

        start = time.perf_counter()
        rng = np.random.default_rng(derive_seed(self.seed, history.num_trials, 2))
        top = [o for o in points if o.fidelity == fidelity]
        parents = [o.config for o in front(top if len(top) >= 2 else points, self.objectives)]
        pool = candidate_pool(self.encoder, parents, rng, num_random=self.pool_size,
                              num_mutations=self.num_mutations, feasible=self.feasible,
                              exclude=seen_keys(history))
        if not pool:
            return []
        known = self._known_values(points, pool, history.pending)

        def encode(configs: Sequence[Mapping[str, Any]], fidelities: Sequence[int] | None = None) -> Any:
            """Encoded rows; with a multi-fidelity model, plus the fidelity (default: the target) as a column."""
            rows = self.encoder.encode_many(configs)
            if self.multi_fidelity:
                at = [fidelity] * len(rows) if fidelities is None else list(fidelities)
                rows = np.column_stack([rows, [_fidelity_feature(f, fidelity) for f in at]])
            return torch.as_tensor(rows, dtype=torch.double)

        train_X = encode([o.config for o in points], [o.fidelity for o in points])
        model, ref = self._model(train_X, points, known)
        # The configurations measured so far, as the model predicts them at the target fidelity.
        baseline = encode(list({config_key(o.config): o.config for o in points}.values()))
        fitted = time.perf_counter()
        pool_X = encode(pool)
        pending = [c for c in history.pending if self.encoder.is_valid(c)]
        X_pending = encode(pending) if pending else None
        acq = self._acquisition(model, ref, baseline, X_pending, derive_seed(self.seed, history.num_trials, 4))
        q = min(n, len(pool))
        candidates, _ = optimize_acqf_discrete(acq, q=q, choices=pool_X, unique=True)
        index = {row.tobytes(): i for i, row in enumerate(pool_X.numpy())}
        chosen = [pool[index[row.tobytes()]] for row in candidates.detach().numpy()]
        logger.info("mobo: GP on %d results at fidelity %s (learned: %s, known: %s) fitted in %.2fs; "
                    "%d of a pool of %d chosen in %.2fs", len(points), fidelity,
                    ",".join(o.name for o in self.learned) or "-",
                    ",".join(o.name for o in self.known_objectives) or "-",
                    fitted - start, len(chosen), len(pool), time.perf_counter() - fitted)
        return chosen

    # -- models ----------------------------------------------------------------------------------------
    @staticmethod
    def _sign(objective: Objective) -> float:
        return 1.0 if objective.direction is Direction.MAXIMIZE else -1.0

    @staticmethod
    def _scale(reference: float, values: np.ndarray) -> float:
        """A positive size for an objective: its reference's or its largest value's, never 0."""
        size = max([abs(reference), *np.abs(values[np.isfinite(values)]).tolist()])
        return size if size > 0 else 1.0

    def _known_values(self, points: Sequence[Observation], pool: Sequence[Config],
                      pending: Sequence[Mapping[str, Any]]) -> _KnownValues:
        known = _KnownValues(self.encoder, [self.known[o.name] for o in self.known_objectives],
                             [self._sign(o) for o in self.known_objectives],
                             width=self.encoder.dim if self.multi_fidelity else None)
        configs = [*(o.config for o in points), *pool, *(c for c in pending if self.encoder.is_valid(c))]
        raw = np.array([known.add(c) for c in configs]).reshape(len(configs), len(self.known_objectives))
        known.scales = np.array([self._scale(o.reference, raw[:, j]) for j, o in enumerate(self.known_objectives)])
        return known

    def _model(self, train_X: Any, points: Sequence[Observation], known: _KnownValues) -> tuple[Any, list[float]]:
        """The joint model (GP for learned objectives, deterministic for known ones) and the reference point."""
        from botorch.models import ModelList
        from botorch.models.deterministic import GenericDeterministicModel

        models: list[Any] = []
        ref: list[float] = []
        if self.learned:
            raw = np.array([[float(o.objectives[obj.name]) for obj in self.learned] for o in points])
            signs = np.array([self._sign(o) for o in self.learned])
            scales = np.array([self._scale(o.reference, raw[:, j]) for j, o in enumerate(self.learned)])
            ys = raw * signs / scales
            # One GP per learned objective: fitting them one by one stays cheap and bounded, where a
            # batched multi-output fit of a mixed GP took many times longer.
            models += [self._fit_gp(train_X, ys[:, j:j + 1]) for j in range(ys.shape[1])]
            ref += [s * o.reference / c for o, s, c in zip(self.learned, signs, scales, strict=True)]
        if self.known_objectives:
            models.append(GenericDeterministicModel(known, num_outputs=len(self.known_objectives)))
            ref += [self._sign(o) * o.reference / c for o, c in zip(self.known_objectives, known.scales, strict=True)]
        model = models[0] if len(models) == 1 else ModelList(*models)
        return model, ref

    def _fit_gp(self, train_X: Any, train_Y: np.ndarray) -> Any:
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import MixedSingleTaskGP, SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        Y = torch.as_tensor(train_Y, dtype=torch.double)
        transform = Standardize(m=Y.shape[-1])
        cat_dims = self.encoder.cat_dims
        if cat_dims:
            gp: Any = MixedSingleTaskGP(train_X, Y, cat_dims=cat_dims, outcome_transform=transform)
        else:
            gp = SingleTaskGP(train_X, Y, outcome_transform=transform)
        # L-BFGS capped: a mixed GP costs ~20 ms per step in Python overhead, and the first tens of
        # steps settle the hyperparameters; hitting the cap is not a failure (no retries).
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp),
                         optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}})
        return gp

    def _acquisition(self, model: Any, ref: list[float], train_X: Any, X_pending: Any, seed: int) -> Any:
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
        from botorch.sampling.get_sampler import get_sampler

        sampler = get_sampler(model.posterior(train_X[:1]), torch.Size([self.mc_samples]), seed=seed)
        if len(ref) == 1:
            return qLogNoisyExpectedImprovement(model, X_baseline=train_X, sampler=sampler, X_pending=X_pending,
                                                prune_baseline=True, cache_root=False)
        if len(ref) == 2:
            return qLogNoisyExpectedHypervolumeImprovement(
                model, ref_point=ref, X_baseline=train_X, sampler=sampler, X_pending=X_pending,
                prune_baseline=True, cache_root=False)
        # Three or more objectives: NEHVI's box decomposition per MC sample took close to a minute per
        # call, so the front is taken once from the posterior mean (qLogEHVI), pending points included.
        from botorch.acquisition.multi_objective.logei import qLogExpectedHypervolumeImprovement
        from botorch.utils.multi_objective.box_decompositions.non_dominated import (
            FastNondominatedPartitioning,
        )

        X_front = train_X if X_pending is None else torch.cat([train_X, X_pending])
        with torch.no_grad():
            Y_front = model.posterior(X_front).mean
        partitioning = FastNondominatedPartitioning(torch.as_tensor(ref, dtype=Y_front.dtype), Y=Y_front)
        # BoTorch types `partitioning` as NondominatedPartitioning, but documents the fast one for it.
        return qLogExpectedHypervolumeImprovement(model, ref_point=ref, sampler=sampler,
                                                  partitioning=partitioning)  # type: ignore[arg-type]
