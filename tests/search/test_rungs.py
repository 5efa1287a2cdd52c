"""Rung arithmetic: table cases for levels, brackets, current rung and promotion quota."""

from __future__ import annotations

import itertools
import math

import pytest

from autopeft.errors import ConfigError
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

LEVEL_CASES = [
    # (min, max, eta, levels)
    (1, 81, 3, [1, 3, 9, 27, 81]),
    (1, 100, 3, [1, 3, 9, 27, 100]),  # non-integer ratio: the last step absorbs the remainder
    (2, 100, 3, [2, 6, 18, 100]),
    (1, 16, 2, [1, 2, 4, 8, 16]),
    (1, 10, 2, [1, 2, 4, 10]),
    (100, 1000, 2, [100, 200, 400, 1000]),
    (3, 8, 3, [8]),  # 8 < 3 * 3: no room for a halving, every trial runs to max
    (5, 5, 3, [5]),
    (1, 100, 2.5, [1, 3, 6, 16, 39, 100]),
]


@pytest.mark.parametrize(("lo", "hi", "eta", "expected"), LEVEL_CASES)
def test_rung_levels_table(lo: int, hi: int, eta: float, expected: list[int]) -> None:
    levels = rung_levels(lo, hi, eta)
    assert levels == expected
    assert levels[0] == (lo if len(levels) > 1 else hi) and levels[-1] == hi
    assert len(levels) == max_bracket(lo, hi, eta) + 1 == num_brackets(lo, hi, eta)
    if float(eta).is_integer():  # each step grows by at least eta (rounding blurs this for eta 2.5)
        assert all(b >= a * eta for a, b in itertools.pairwise(levels))


def test_no_room_for_a_halving_leaves_only_max() -> None:
    # 5 * 3 > 14: s_max = 0, so there is one rung and it is the maximum (every trial runs to 14).
    assert max_bracket(5, 14, 3) == 0
    assert rung_levels(5, 14, 3) == [14]


def test_log_rounding_is_exact_for_powers() -> None:
    for eta in (2, 3, 4, 5):
        for s in range(8):
            assert max_bracket(1, eta**s, eta) == s


@pytest.mark.parametrize(
    ("bracket", "expected"),
    [(0, [1, 3, 9, 27, 81]), (1, [3, 9, 27, 81]), (2, [9, 27, 81]), (3, [27, 81]), (4, [81])],
)
def test_bracket_rungs_start_at_their_index(bracket: int, expected: list[int]) -> None:
    assert bracket_rungs(1, 81, 3, bracket) == expected


def test_bracket_out_of_range() -> None:
    with pytest.raises(ValueError, match="bracket"):
        bracket_rungs(1, 81, 3, 5)


def test_bracket_distribution_follows_hyperband_sizes() -> None:
    probs = bracket_distribution(5, 3)
    assert math.isclose(sum(probs), 1.0)
    sizes = [5 / 5 * 81, 5 / 4 * 27, 5 / 3 * 9, 5 / 2 * 3, 5 / 1 * 1]  # Li et al., s_max = 4, eta = 3
    assert probs == pytest.approx([s / sum(sizes) for s in sizes])
    assert probs == sorted(probs, reverse=True)  # the aggressive brackets get the most trials
    assert bracket_distribution(1, 3) == [1.0]


@pytest.mark.parametrize(
    ("fidelity", "expected"),
    [(0, -1), (0.5, -1), (1, 0), (2, 0), (3, 1), (8.999, 1), (9, 2), (26, 2), (27, 3), (80, 3), (81, 4)],
)
def test_current_rung(fidelity: float, expected: int) -> None:
    assert current_rung(fidelity, [1, 3, 9, 27, 81]) == expected


@pytest.mark.parametrize(
    ("n", "eta", "quota"),
    [(0, 3, 0), (1, 3, 0), (2, 3, 0), (3, 3, 1), (5, 3, 1), (6, 3, 2), (9, 3, 3), (1, 2, 0), (2, 2, 1), (7, 2, 3),
     (5, 2.5, 2), (4, 2.5, 1)],
)  # fmt: skip
def test_promotion_quota(n: int, eta: float, quota: int) -> None:
    assert promotion_quota(n, eta) == quota
    assert [is_promotable(p, n, eta) for p in range(n)] == [p < quota for p in range(n)]


@pytest.mark.parametrize(
    ("lo", "hi", "eta", "field"),
    [(0, 9, 3, "min_fidelity"), (1, 0, 3, "max_fidelity"), (10, 9, 3, "min_fidelity"), (1, 9, 1.5, "eta"),
     (1.0, 9, 3, "min_fidelity"), (1, 9, float("nan"), "eta"), (1, 9, True, "eta")],
)  # fmt: skip
def test_invalid_fidelities_raise_config_error(lo: int, hi: int, eta: float, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        rung_levels(lo, hi, eta)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
