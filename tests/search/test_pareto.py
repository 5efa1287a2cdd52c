"""Pareto utilities: fronts, crowding, exact hypervolume against brute force, promotion ranking."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def brute_force_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume of the union of boxes [p, ref] by inclusion-exclusion (exact, for a handful of points)."""
    pts = [p for p in np.asarray(points, dtype=float) if np.all(p < ref)]
    total = 0.0
    for size in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, size):
            corner = np.max(np.stack(subset), axis=0)
            total += (-1) ** (size + 1) * float(np.prod(ref - corner))
    return total


def fronts_as_sets(fronts: list[np.ndarray]) -> list[set[int]]:
    return [set(f.tolist()) for f in fronts]


def test_search_package_imports_without_torch() -> None:
    code = "import sys, autopeft.search; assert 'torch' not in sys.modules and 'botorch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- conversion --------------------------------------------------------------------------------------


def test_to_minimization_negates_maximised_columns() -> None:
    raw = np.array([[0.9, 100.0], [0.8, 50.0]])
    out = to_minimization(raw, [Direction.MAXIMIZE, "minimize"])
    np.testing.assert_array_equal(out, [[-0.9, 100.0], [-0.8, 50.0]])
    np.testing.assert_array_equal(raw, [[0.9, 100.0], [0.8, 50.0]])  # input untouched


def test_reference_point_follows_directions() -> None:
    objectives = [Objective("score", Direction.MAXIMIZE, 0.0), Objective("params", "minimize", 1e6)]
    assert objectives[1].direction is Direction.MINIMIZE
    np.testing.assert_array_equal(reference_point(objectives), [-0.0, 1e6])


def test_objective_needs_a_finite_reference() -> None:
    with pytest.raises(ValueError, match="finite"):
        Objective("score", Direction.MAXIMIZE)
    with pytest.raises(ValueError):
        Objective("score", "upwards", 0.0)  # type: ignore[arg-type]


def test_maximised_study_has_the_same_hypervolume_as_its_mirror() -> None:
    raw = np.array([[0.9, 10.0], [0.7, 4.0], [0.5, 1.0]])
    objectives = [Objective("score", Direction.MAXIMIZE, 0.0), Objective("params", Direction.MINIMIZE, 12.0)]
    pts = to_minimization(raw, [o.direction for o in objectives])
    # by hand: boxes (score above 0, params below 12) => 0.9*2 + 0.7*6 + 0.5*3 with overlaps removed
    expected = 0.9 * (12 - 10) + 0.7 * (10 - 4) + 0.5 * (4 - 1)
    assert hypervolume(pts, reference_point(objectives)) == pytest.approx(expected)


def test_bad_shapes_and_nan_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        non_dominated_sort(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        pareto_front_mask([[0.0, math.nan]])
    with pytest.raises(ValueError, match="objectives"):
        hypervolume([[0.0, 1.0, 2.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[0.0, 1.0]], [1.0, math.inf])


# --- non-dominated sorting ---------------------------------------------------------------------------


def test_non_dominated_sort_known_fronts() -> None:
    pts = np.array([[1, 4], [2, 2], [4, 1], [2, 4], [3, 3], [5, 5], [4, 4]], dtype=float)
    assert fronts_as_sets(non_dominated_sort(pts)) == [{0, 1, 2}, {3, 4}, {6}, {5}]
    np.testing.assert_array_equal(pareto_front_mask(pts), [True, True, True, False, False, False, False])


def test_duplicates_share_a_front() -> None:
    pts = np.array([[1, 1], [1, 1], [2, 2], [2, 2], [0, 3]], dtype=float)
    assert fronts_as_sets(non_dominated_sort(pts)) == [{0, 1, 4}, {2, 3}]


def test_weak_dominance_counts() -> None:
    # equal in one objective, better in the other: dominated
    assert fronts_as_sets(non_dominated_sort([[1.0, 2.0], [1.0, 3.0]])) == [{0}, {1}]


def test_fronts_partition_and_respect_dominance_on_random_sets() -> None:
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 4):
        pts = rng.integers(0, 5, size=(40, m)).astype(float)  # many ties and duplicates
        fronts = non_dominated_sort(pts)
        assert sorted(np.concatenate(fronts).tolist()) == list(range(40))
        rank = np.empty(40, dtype=int)
        for r, front in enumerate(fronts):
            rank[front] = r
        for i, j in itertools.product(range(40), repeat=2):
            if np.all(pts[i] <= pts[j]) and np.any(pts[i] < pts[j]):
                assert rank[i] < rank[j]
            if np.array_equal(pts[i], pts[j]):
                assert rank[i] == rank[j]
        for front in fronts[1:]:  # every later point is dominated by some point of the front before
            assert not pareto_front_mask(pts)[front].any()


@given(st.integers(1, 4).flatmap(lambda m: st.lists(
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]) | st.floats(-3, 3), min_size=m, max_size=m),
    min_size=1, max_size=40)))
@settings(max_examples=300, deadline=None)
def test_front_mask_is_exactly_the_undominated_points(rows: list[list[float]]) -> None:
    """The sort-based mask (a fast path for two objectives, a scan for more) against its definition: a point
    is on the front when no other point is no worse everywhere and better somewhere (ties and copies too)."""
    points = np.array(rows)
    expected = [not any(np.all(q <= p) and np.any(q < p) for q in points) for p in points]
    assert pareto_front_mask(points).tolist() == expected


def test_empty_input() -> None:
    assert non_dominated_sort(np.zeros((0, 2))) == []
    assert non_dominated_sort([]) == []
    assert pareto_front_mask([]).shape == (0,)
    assert crowding_distance(np.zeros((0, 3))).shape == (0,)
    assert hypervolume([], [1.0, 1.0]) == 0.0
    assert hypervolume_contributions(np.zeros((0, 2)), [1.0, 1.0]).shape == (0,)
    assert rank_for_promotion(np.zeros((0, 2)), 3).shape == (0,)


# --- crowding distance -------------------------------------------------------------------------------


def test_crowding_boundaries_are_infinite_and_interior_known() -> None:
    pts = np.array([[0, 4], [1, 3], [3, 1], [4, 0]], dtype=float)
    d = crowding_distance(pts)
    assert math.isinf(d[0]) and math.isinf(d[3])
    # point 1: (3-0)/4 + (4-1)/4 ; point 2: (4-1)/4 + (3-0)/4
    np.testing.assert_allclose(d[1:3], [1.5, 1.5])


def test_crowding_constant_objective_has_no_nan() -> None:
    pts = np.array([[0, 7], [1, 7], [2, 7], [5, 7]], dtype=float)
    d = crowding_distance(pts)
    assert not np.isnan(d).any()
    assert math.isinf(d[0]) and math.isinf(d[3])
    np.testing.assert_allclose(d[1:3], [2 / 5, 4 / 5])
    np.testing.assert_array_equal(crowding_distance(np.ones((3, 2))), [0.0, 0.0, 0.0])


def test_crowding_small_sets_are_all_boundary() -> None:
    assert np.isinf(crowding_distance([[0.0, 1.0], [1.0, 0.0]])).all()
    assert crowding_distance([[0.0, 1.0]]).tolist() == [0.0]  # a single point has no spread


# --- hypervolume -------------------------------------------------------------------------------------


def test_hypervolume_2d_staircase() -> None:
    pts = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert hypervolume(pts, [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume(pts[::-1], [4.0, 4.0]) == pytest.approx(6.0)  # order does not matter


def test_hypervolume_3d_unit_cubes() -> None:
    ref = np.array([2.0, 2.0, 2.0])
    assert hypervolume([[1.0, 1.0, 1.0]], ref) == pytest.approx(1.0)
    assert hypervolume([[0.0, 0.0, 0.0]], ref) == pytest.approx(8.0)
    # three unit-thick slabs sharing the cube [1,2]^3 -> 3 * 2 - 3 * 1 + 1 = 4 (inclusion-exclusion)
    slabs = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    assert hypervolume(slabs, ref) == pytest.approx(4.0)
    assert hypervolume(slabs, ref) == pytest.approx(brute_force_hv(slabs, ref))


def test_hypervolume_1d_is_distance_to_reference() -> None:
    assert hypervolume([[3.0], [1.0], [2.0]], [5.0]) == pytest.approx(4.0)


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_hypervolume_matches_inclusion_exclusion(m: int) -> None:
    rng = np.random.default_rng(m)
    ref = np.ones(m)
    for _ in range(25):
        n = int(rng.integers(1, 9))
        pts = rng.uniform(-0.2, 1.1, size=(n, m))  # some points outside the reference
        if rng.random() < 0.3:
            pts = np.round(pts, 1)  # ties and duplicates
        assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref), abs=1e-12)


def test_points_outside_the_reference_are_ignored() -> None:
    ref = [4.0, 4.0]
    base = hypervolume([[2.0, 2.0]], ref)
    assert hypervolume([[2.0, 2.0], [5.0, 0.0], [4.0, 1.0], [0.0, 4.0]], ref) == pytest.approx(base)
    assert hypervolume([[5.0, 5.0]], ref) == 0.0


def test_duplicates_do_not_change_hypervolume() -> None:
    pts = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert hypervolume(np.vstack([pts, pts]), [4.0, 4.0]) == pytest.approx(hypervolume(pts, [4.0, 4.0]))


def test_adding_a_point_never_lowers_hypervolume() -> None:
    rng = np.random.default_rng(7)
    for m in (2, 3):
        ref = np.ones(m)
        pts = rng.uniform(0, 1.2, size=(30, m))
        values = [hypervolume(pts[:i], ref) for i in range(31)]
        assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))


# --- contributions -----------------------------------------------------------------------------------


def test_contributions_of_a_staircase() -> None:
    pts = np.array([[1, 3], [2, 2], [3, 1], [3, 3]], dtype=float)
    np.testing.assert_allclose(hypervolume_contributions(pts, [4.0, 4.0]), [1.0, 1.0, 1.0, 0.0])


def test_contributions_sum_to_hypervolume_minus_shared_volume() -> None:
    # a single box is all exclusive; otherwise the sum misses exactly the volume that at least two
    # boxes share, which is the hypervolume of the pairwise corners max(p_i, p_j)
    ref = np.ones(3)
    single = np.array([[0.2, 0.3, 0.4]])
    assert hypervolume_contributions(single, ref)[0] == pytest.approx(hypervolume(single, ref))
    rng = np.random.default_rng(11)
    for m in (2, 3):
        ref = np.ones(m)
        pts = rng.uniform(0, 1, size=(12, m))
        pts = pts[pareto_front_mask(pts)]
        corners = np.array([np.maximum(p, q) for p, q in itertools.combinations(pts, 2)]).reshape(-1, m)
        shared = hypervolume(corners, ref)
        total = hypervolume_contributions(pts, ref).sum()
        assert total == pytest.approx(hypervolume(pts, ref) - shared, abs=1e-12)


def test_contributions_match_leave_one_out_brute_force() -> None:
    rng = np.random.default_rng(3)
    for m in (2, 3):
        ref = np.ones(m)
        pts = rng.uniform(0, 1.1, size=(7, m))
        full = brute_force_hv(pts, ref)
        expected = [full - brute_force_hv(np.delete(pts, i, axis=0), ref) for i in range(7)]
        np.testing.assert_allclose(hypervolume_contributions(pts, ref), expected, atol=1e-12)


def test_contributions_of_one_front_match_brute_force() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        pts = rng.uniform(0, 1.1, size=(8, 2))
        pts = pts[pareto_front_mask(pts)]
        if rng.random() < 0.5:
            pts = np.vstack([pts, pts[:1]])  # a duplicate on the front
        full = brute_force_hv(pts, np.ones(2))
        expected = [full - brute_force_hv(np.delete(pts, i, axis=0), np.ones(2)) for i in range(len(pts))]
        np.testing.assert_allclose(hypervolume_contributions(pts, np.ones(2)), expected, atol=1e-12)


def test_duplicate_points_contribute_nothing() -> None:
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 3.0]])
    c = hypervolume_contributions(pts, [4.0, 4.0])
    assert c[0] == 0.0 and c[1] == 0.0 and c[2] > 0


# --- promotion ---------------------------------------------------------------------------------------


def test_promotion_takes_the_first_front_whole_then_cuts_by_crowding() -> None:
    front0 = [[1, 5], [3, 3], [5, 1]]
    front1 = [[2, 6], [3, 5], [3.5, 4.5], [4, 4], [6, 2]]  # (3.5, 4.5) is the crowded middle
    pts = np.array(front0 + front1 + [[9, 9]], dtype=float)
    assert [set(f.tolist()) for f in non_dominated_sort(pts)][:2] == [{0, 1, 2}, {3, 4, 5, 6, 7}]
    picked = rank_for_promotion(pts, 5)
    assert picked[:3].tolist() == [0, 1, 2]
    assert set(picked[3:].tolist()) == {3, 7}  # the boundary points of front 1 have infinite crowding
    picked = rank_for_promotion(pts, 7, tie_break="crowding")
    assert set(picked.tolist()) == {0, 1, 2, 3, 7, 4, 6}  # (3.5, 4.5) is the most crowded: left out


def test_promotion_cut_by_hypervolume_contribution() -> None:
    pts = np.array([[0, 0], [1, 9], [2, 3], [2.1, 2.9], [9, 1]], dtype=float)
    ref = [10.0, 10.0]
    contrib = hypervolume_contributions(pts[1:], ref)
    picked = rank_for_promotion(pts, 3, tie_break=TieBreak.HYPERVOLUME, reference=ref)
    assert picked[0] == 0
    expected = 1 + np.lexsort((np.arange(4), -contrib))[:2]
    assert picked[1:].tolist() == expected.tolist()
    # the nearly duplicated pair (2,3)/(2.1,2.9) shares its volume, so at most one of them is kept
    assert len({2, 3} & set(picked.tolist())) <= 1
    assert rank_for_promotion(pts, 3, tie_break="hypervolume").shape == (3,)  # default reference


def test_promotion_is_deterministic_on_ties() -> None:
    pts = np.array([[1.0, 1.0]] * 4 + [[0.0, 5.0]])
    for rule in ("crowding", "hypervolume"):
        picked = rank_for_promotion(pts, 2, tie_break=rule)
        assert len(set(picked.tolist())) == 2
        assert np.array_equal(picked, rank_for_promotion(pts, 2, tie_break=rule))
        assert rank_for_promotion(np.ones((5, 2)), 3, tie_break=rule).tolist() == [0, 1, 2]


def test_promotion_one_objective_is_sorting() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, size=20).astype(float)
    for k in range(21):
        picked = rank_for_promotion(values[:, None], k)
        expected = np.lexsort((np.arange(20), values))[:k]
        assert sorted(picked.tolist()) == sorted(expected.tolist())


def test_promotion_k_bounds() -> None:
    pts = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]])
    assert rank_for_promotion(pts, 0).shape == (0,)
    assert sorted(rank_for_promotion(pts, 10).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError):
        rank_for_promotion(pts, 2, tie_break="random")
