"""Pareto utilities: non-dominated sorting, crowding distance, exact hypervolume, promotion ranking.

Every routine works in one convention: an ``(n, m)`` array of objective values that are all
*minimised*. `to_minimization` turns raw values (some maximised, e.g. the task score) into that
convention by negating the maximised columns, and `reference_point` does the same for the fixed
per-objective reference values of hypervolume, so a study's numbers stay comparable across runs.

Plain Python and numpy only: the search package must import in milliseconds (no torch, no BoTorch).
Hypervolume is exact for any number of objectives by slicing along the last objective (HSO); that is
fast for 1-3 objectives and fine for small sets beyond, where BoTorch's box decomposition can take over.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


class Direction(str, enum.Enum):
    """Whether an objective is minimised (cost, parameters, seconds) or maximised (task score)."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class TieBreak(str, enum.Enum):
    """How `rank_for_promotion` cuts the front that does not fit whole."""

    CROWDING = "crowding"
    HYPERVOLUME = "hypervolume"


@dataclass(frozen=True)
class Objective:
    """One objective of a study, with the fixed reference value its hypervolume is measured from.

    ``reference`` is in the objective's own units and should be a value every useful trial beats
    (e.g. 0.0 for an accuracy that is maximised, the model's full parameter count for a minimised
    parameter count). Keeping it fixed makes hypervolumes comparable between snapshots and studies.
    """

    name: str
    direction: Direction = Direction.MINIMIZE
    reference: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", Direction(self.direction))
        if not math.isfinite(self.reference):
            raise ValueError(f"objective {self.name!r}: the hypervolume reference must be finite, got {self.reference}")


def _as_points(points: ArrayLike, m: int | None = None) -> FloatArray:
    """Validate an ``(n, m)`` float array without NaN (infinities allowed, empty input allowed)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        width = m if m is not None else (arr.shape[-1] if arr.ndim == 2 else 0)
        return arr.reshape(0, width)
    if arr.ndim != 2:
        raise ValueError(f"expected an (n, m) array of objective values, got shape {arr.shape}")
    if m is not None and arr.shape[1] != m:
        raise ValueError(f"expected {m} objectives per point, got {arr.shape[1]}")
    if np.isnan(arr).any():
        raise ValueError("objective values contain NaN; drop or impute failed trials first")
    return arr


def to_minimization(values: ArrayLike, directions: Sequence[Direction | str]) -> FloatArray:
    """Negate the maximised columns of raw ``(n, m)`` values so every routine here can minimise."""
    signs = np.array([-1.0 if Direction(d) is Direction.MAXIMIZE else 1.0 for d in directions])
    arr = _as_points(values, len(signs))
    return arr * signs


def reference_point(objectives: Sequence[Objective]) -> FloatArray:
    """The objectives' reference values in the all-minimise convention of `to_minimization`."""
    raw = np.array([[o.reference for o in objectives]], dtype=np.float64)
    return to_minimization(raw, [o.direction for o in objectives])[0]


def _dominance_matrix(pts: FloatArray) -> NDArray[np.bool_]:
    """``dom[i, j]`` is True when point i dominates point j (no worse everywhere, better somewhere)."""
    le = np.all(pts[:, None, :] <= pts[None, :, :], axis=2)
    lt = np.any(pts[:, None, :] < pts[None, :, :], axis=2)
    return le & lt


def non_dominated_sort(points: ArrayLike) -> list[IntArray]:
    """Split points into fronts of indices (first = Pareto front), as NSGA-II and MO-Hyperband rank them.

    Identical points never dominate each other, so duplicates land in the same front. Cost is
    O(m n^2) time and O(n^2) memory, fine for the few thousand results of one rung.
    """
    pts = _as_points(points)
    n = pts.shape[0]
    if n == 0:
        return []
    dom = _dominance_matrix(pts)
    dominated_by = dom.sum(axis=0)
    remaining = np.ones(n, dtype=bool)
    fronts: list[IntArray] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (dominated_by == 0))
        fronts.append(front.astype(np.intp))
        remaining[front] = False
        dominated_by = dominated_by - dom[front].sum(axis=0)
    return fronts


def pareto_front_mask(points: ArrayLike) -> NDArray[np.bool_]:
    """Boolean mask of the points no other point dominates (the Pareto front, duplicates included).

    Sort-based rather than the O(n^2) dominance matrix, because a dashboard reads studies of thousands of
    full-fidelity trials: in lexicographic order a point can only be dominated by a point before it.
    """
    pts = _as_points(points)
    n = pts.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort(pts.T[::-1])
    ordered = pts[order]
    mask = np.zeros(n, dtype=bool)
    mask[order] = _front_of_two(ordered) if pts.shape[1] == 2 else _front_of_sorted(ordered)
    return mask


def _front_of_two(ordered: FloatArray) -> NDArray[np.bool_]:
    """Two objectives, sorted: a point is dominated when a different, earlier point is no worse on the
    second objective. Copies of a point sit together, so "earlier and different" = before its group."""
    n = ordered.shape[0]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    best_before = np.concatenate(([np.inf], np.minimum.accumulate(ordered[:, 1])))[group_start]
    return np.asarray(ordered[:, 1] < best_before, dtype=bool)


def _front_of_sorted(ordered: FloatArray) -> NDArray[np.bool_]:
    """Any number of objectives, sorted: each point against the front found so far, O(n |front|)."""
    keep = np.zeros(ordered.shape[0], dtype=bool)
    front = ordered[:0]
    for index, point in enumerate(ordered):
        if front.shape[0] and bool(np.any(np.all(front <= point, axis=1) & np.any(front < point, axis=1))):
            continue
        keep[index] = True
        front = np.vstack((front, point))
    return keep


def crowding_distance(points: ArrayLike) -> FloatArray:
    """NSGA-II crowding distance: how isolated each point is, so a cut front keeps its spread.

    Boundary points of every objective get infinity; an objective that is constant over the set adds
    nothing, not even boundary infinities (there is no spread to keep and no range to divide by).
    """
    pts = _as_points(points)
    n, m = pts.shape
    dist = np.zeros(n, dtype=np.float64)
    if n == 0:
        return dist
    for j in range(m):
        order = np.argsort(pts[:, j], kind="stable")
        col = pts[order, j]
        span = col[-1] - col[0]
        if not span > 0:
            continue
        dist[order[0]] = dist[order[-1]] = math.inf
        if n > 2 and np.isfinite(span):
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def _hv2d(pts: FloatArray, ref: FloatArray) -> float:
    """Area dominated by 2-D points that all lie strictly inside ``ref`` (sort-and-sweep)."""
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    xs, ys = pts[order, 0], pts[order, 1]
    best_y = np.minimum.accumulate(ys)
    keep = np.ones(len(xs), dtype=bool)
    keep[1:] = best_y[1:] < best_y[:-1]
    xs, ys = xs[keep], best_y[keep]
    widths = np.diff(np.append(xs, ref[0]))
    return float(np.sum(widths * (ref[1] - ys)))


def _hv(pts: FloatArray, ref: FloatArray) -> float:
    """Exact hypervolume of points strictly inside ``ref``, by slicing along the last objective."""
    n, m = pts.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - pts[:, 0].min())
    if m == 2:
        return _hv2d(pts, ref)
    pts = pts[pareto_front_mask(pts)]
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    z = np.append(pts[:, -1], ref[-1])
    total = 0.0
    for i in range(len(pts)):
        depth = z[i + 1] - z[i]
        if depth > 0:
            total += depth * _hv(pts[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(points: ArrayLike, reference: ArrayLike) -> float:
    """Volume dominated by the points and bounded by ``reference`` (all objectives minimised).

    The quality of a whole front in one number: it grows when the front moves forward or spreads.
    Points that do not strictly dominate the reference add nothing and are ignored. Exact for any
    number of objectives; the slicing cost grows quickly beyond 3 objectives, so keep those sets small.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"the hypervolume reference must be finite, got {ref}")
    pts = _as_points(points, ref.shape[0])
    pts = pts[np.all(pts < ref, axis=1)]
    return _hv(pts, ref)


def _contributions2d(pts: FloatArray, ref: FloatArray) -> FloatArray:
    """Exclusive areas of mutually non-dominated 2-D points inside ``ref``: the box up to each neighbour."""
    out = np.zeros(len(pts), dtype=np.float64)
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    xs, ys = pts[order, 0], pts[order, 1]
    prev_best = np.append(np.inf, np.minimum.accumulate(ys)[:-1])
    on_front = ys < prev_best  # first copy of each distinct point
    unique_next = np.ones(len(xs), dtype=bool)
    unique_next[:-1] = (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])
    duplicated = ~unique_next | np.append(False, ~unique_next[:-1])
    front = np.flatnonzero(on_front)
    fx, fy = xs[front], ys[front]
    right = np.append(fx[1:], ref[0])
    above = np.append(ref[1], fy[:-1])
    out[order[front]] = np.where(duplicated[front], 0.0, (right - fx) * (above - fy))
    return out


def hypervolume_contributions(points: ArrayLike, reference: ArrayLike) -> FloatArray:
    """Exclusive hypervolume of each point: how much the front loses if that point alone is dropped.

    Dominated points, duplicates of another point and points outside the reference contribute 0.
    Used as the SMS-EMOA style tie-break when a front has to be cut.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    pts = _as_points(points, ref.shape[0])
    contrib = np.zeros(pts.shape[0], dtype=np.float64)
    inside = np.flatnonzero(np.all(pts < ref, axis=1))
    if inside.size == 0:
        return contrib
    sub = pts[inside]
    on_front = pareto_front_mask(sub)
    if sub.shape[1] == 2 and on_front.all():  # one front (as when a rung is cut): closed form
        contrib[inside] = _contributions2d(sub, ref)
        return contrib
    candidates = np.flatnonzero(on_front)
    total = _hv(sub, ref)
    for c in candidates:
        rest = np.delete(sub, c, axis=0)
        contrib[inside[c]] = max(total - _hv(rest, ref), 0.0)
    return contrib


def _default_reference(pts: FloatArray) -> FloatArray:
    """A reference just beyond the worst value of each objective, when the caller gives none."""
    finite = np.isfinite(pts)
    hi = np.where(finite, pts, -np.inf).max(axis=0)
    lo = np.where(finite, pts, np.inf).min(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(np.isfinite(hi), hi + 0.1 * span, 1.0)


def rank_for_promotion(
    points: ArrayLike,
    k: int,
    tie_break: TieBreak | str = TieBreak.CROWDING,
    reference: ArrayLike | None = None,
) -> IntArray:
    """Pick the ``k`` points a multi-objective Hyperband rung promotes (as Syne Tune's MOASHA does).

    Whole fronts are taken in order; the first front that does not fit is cut by the tie-break
    (largest crowding distance, or largest hypervolume contribution within that front, measured
    from ``reference`` or from just beyond the front's worst values), equal keys by lower index.
    Returned order: the whole fronts (by rank, then index), then the cut front's picks (best first).
    With one objective this is plain sorting, ties by index.
    """
    rule = TieBreak(tie_break)
    pts = _as_points(points)
    k = max(0, min(int(k), pts.shape[0]))
    chosen: list[IntArray] = []
    left = k
    for front in non_dominated_sort(pts):
        if left == 0:
            break
        if len(front) <= left:
            chosen.append(front)
            left -= len(front)
            continue
        sub = pts[front]
        if rule is TieBreak.CROWDING:
            key = crowding_distance(sub)
        else:
            ref = _default_reference(sub) if reference is None else np.asarray(reference, dtype=np.float64)
            key = hypervolume_contributions(sub, ref)
        order = np.lexsort((front, -key))
        chosen.append(front[order[:left]])
        left = 0
    if not chosen:
        return np.zeros(0, dtype=np.intp)
    return np.concatenate(chosen).astype(np.intp)
