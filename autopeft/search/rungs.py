"""Rung arithmetic for successive halving and Hyperband, as pure functions.

Kept apart from the schedulers (as Optuna's ``pruners/_successive_halving.py`` keeps
``_get_current_rung`` apart from the pruner) so the numbers can be checked in a table, without a
scheduler, and reused by the engine and the dashboard to label rungs.

Convention: fidelities are positive integers in the trial recipe's unit (training steps or examples).
The rungs of a study are ``min * eta**k`` for ``k = 0 .. s_max - 1`` followed by ``max`` itself, with
``s_max = floor(log_eta(max / min))``. There are always ``s_max + 1`` rungs, as in Hyperband; the
first is the minimum (unless ``max < min * eta``: then the only rung is ``max``), the last the
maximum, and every step grows the fidelity by at least ``eta``: the last step absorbs the remainder
when ``max / min`` is not a power of ``eta``, so no promotion is spent on a step smaller than ``eta``.
Hyperband bracket ``s`` (``0 .. s_max``) starts at rung ``s``: bracket 0 is the most aggressive
(plain ASHA), bracket ``s_max`` runs every trial at ``max``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autopeft.errors import ConfigError

_EPS = 1e-9


def validate_fidelities(min_fidelity: int, max_fidelity: int, eta: float) -> None:
    """Raise `ConfigError` unless ``1 <= min <= max`` are integers and ``eta >= 2``.

    ``eta >= 2`` (as Syne Tune and Optuna require) keeps the rounded rungs strictly increasing.
    """
    for name, value in (("min_fidelity", min_fidelity), ("max_fidelity", max_fidelity)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"must be an integer >= 1, got {value!r}", field=name)
    if min_fidelity > max_fidelity:
        raise ConfigError(f"min_fidelity {min_fidelity} exceeds max_fidelity {max_fidelity}", field="min_fidelity")
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not math.isfinite(eta) or eta < 2:
        raise ConfigError(f"must be a number >= 2, got {eta!r}", field="eta")


def max_bracket(min_fidelity: int, max_fidelity: int, eta: float) -> int:
    """``s_max = floor(log_eta(max / min))``: the number of halvings from min to max.

    Computed by repeated multiplication with a small tolerance, so ``log_3(81)`` is 4, not 3.999...
    """
    validate_fidelities(min_fidelity, max_fidelity, eta)
    s, level = 0, float(min_fidelity)
    while level * eta <= max_fidelity * (1.0 + _EPS):
        level *= eta
        s += 1
    return s


def rung_levels(min_fidelity: int, max_fidelity: int, eta: float) -> list[int]:
    """The study's rung fidelities: geometric from ``min`` by ``eta``, ending exactly at ``max``.

    ``rung_levels(1, 81, 3) == [1, 3, 9, 27, 81]``; ``rung_levels(1, 100, 3) == [1, 3, 9, 27, 100]``.
    """
    s_max = max_bracket(min_fidelity, max_fidelity, eta)
    levels = [math.floor(min_fidelity * eta**k + 0.5) for k in range(s_max)]  # half up, not to even
    levels.append(max_fidelity)
    return levels


def num_brackets(min_fidelity: int, max_fidelity: int, eta: float) -> int:
    """How many Hyperband brackets the study has: ``s_max + 1``."""
    return max_bracket(min_fidelity, max_fidelity, eta) + 1


def bracket_rungs(min_fidelity: int, max_fidelity: int, eta: float, bracket: int) -> list[int]:
    """The rung fidelities of Hyperband bracket ``bracket``: the study's rungs from index ``bracket`` on."""
    levels = rung_levels(min_fidelity, max_fidelity, eta)
    if not 0 <= bracket < len(levels):
        raise ValueError(f"bracket must be in [0, {len(levels) - 1}], got {bracket}")
    return levels[bracket:]


def bracket_distribution(n_brackets: int, eta: float) -> list[float]:
    """Probability of starting a new trial in each bracket, proportional to Hyperband's bracket sizes.

    Li et al. give bracket ``s`` (here: starting at rung ``s``, so ``s_max - s`` halvings) about
    ``(s_max + 1) / (s_max - s + 1) * eta**(s_max - s)`` initial configurations; sampling brackets in
    that proportion makes the asynchronous variant spend its trials as synchronous Hyperband would.
    """
    if n_brackets < 1:
        raise ValueError(f"n_brackets must be >= 1, got {n_brackets}")
    s_max = n_brackets - 1
    sizes = [(s_max + 1) / (s_max - s + 1) * eta ** (s_max - s) for s in range(n_brackets)]
    total = sum(sizes)
    return [x / total for x in sizes]


def current_rung(fidelity: float, levels: Sequence[int]) -> int:
    """Index of the highest rung whose fidelity has been reached, or -1 below the first rung."""
    reached = -1
    for i, level in enumerate(levels):
        if fidelity + _EPS >= level:
            reached = i
        else:
            break
    return reached


def promotion_quota(n_at_rung: int, eta: float) -> int:
    """How many of the ``n`` results at a rung may move on: the top ``floor(n / eta)``.

    Zero until a rung has ``eta`` results, which is what makes ASHA start new trials early on.
    """
    if n_at_rung < 0:
        raise ValueError(f"n_at_rung must be >= 0, got {n_at_rung}")
    return math.floor(n_at_rung / eta + _EPS)


def is_promotable(position: int, n_at_rung: int, eta: float) -> bool:
    """Whether the result ranked at ``position`` (0 = best) among ``n`` at a rung is in the top quota."""
    return 0 <= position < promotion_quota(n_at_rung, eta)
