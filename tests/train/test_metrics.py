"""Metrics against hand-computed values, degenerate inputs, and `compute_metric`'s contract."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from autopeft.errors import ConfigError, DataError
from autopeft.train.metrics import (
    METRIC_NAMES,
    REGRESSION_METRICS,
    accuracy,
    compute_metric,
    f1,
    matthews,
    pearson,
    spearman,
)

PREDS = [1, 0, 1, 1]
GOLD = [1, 0, 0, 1]  # tp=2, tn=1, fp=1, fn=0
X = [1.0, 2.0, 3.0, 4.0]
Y = [2.0, 4.0, 5.0, 4.0]


def test_classification_metrics_match_hand_computed_values() -> None:
    assert accuracy(PREDS, GOLD) == pytest.approx(3 / 4)
    assert f1(PREDS, GOLD) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))  # precision 2/3, recall 1
    assert matthews(PREDS, GOLD) == pytest.approx((2 * 1 - 1 * 0) / math.sqrt(3 * 2 * 2 * 1))


def test_correlations_match_hand_computed_values() -> None:
    # deviations from the means: dx = (-1.5, -.5, .5, 1.5), dy = (-1.75, .25, 1.25, .25)
    assert pearson(X, Y) == pytest.approx(3.5 / math.sqrt(5 * 4.75))
    # ranks of Y with the tie averaged: (1, 2.5, 4, 2.5)
    assert spearman(X, Y) == pytest.approx(3 / math.sqrt(5 * 4.5))


def test_compute_metric_primary_and_companions() -> None:
    out = compute_metric("f1", PREDS, GOLD)
    assert set(out) == {"f1", "accuracy", "primary"} and out["primary"] == out["f1"]
    out = compute_metric("matthews", PREDS, GOLD)
    assert out["primary"] == out["matthews"] and out["accuracy"] == pytest.approx(0.75)
    out = compute_metric("pearson_spearman", X, Y)
    assert out["primary"] == pytest.approx((out["pearson"] + out["spearman"]) / 2)
    assert compute_metric("pearson", X, Y)["primary"] == out["pearson"]
    assert compute_metric("accuracy", np.array(PREDS), np.array(GOLD)) == {"accuracy": 0.75, "primary": 0.75}


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_perfect_predictions_score_highest(name: str) -> None:
    gold = [0.5, 1.0, 3.0, 2.0] if name in REGRESSION_METRICS else [0, 1, 1, 0]
    perfect = compute_metric(name, gold, gold)["primary"]
    wrong = compute_metric(name, gold[::-1] if name in REGRESSION_METRICS else [1, 0, 0, 1], gold)["primary"]
    assert perfect == pytest.approx(1.0) and wrong < perfect


def test_degenerate_inputs_give_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert matthews([1, 1, 1, 1], GOLD) == 0.0
        assert matthews(PREDS, [0, 0, 0, 0]) == 0.0
        assert f1([0, 0, 0, 0], GOLD) == 0.0
        assert pearson([2.0] * 4, Y) == 0.0
        assert spearman(X, [3.0] * 4) == 0.0
        assert compute_metric("pearson_spearman", [1.0] * 4, Y)["primary"] == 0.0


def test_compute_metric_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'auc'.*accuracy"):
        compute_metric("auc", PREDS, GOLD)
    with pytest.raises(DataError, match="must be equal"):
        compute_metric("accuracy", PREDS, GOLD[:3])
    with pytest.raises(DataError, match="no predictions"):
        compute_metric("accuracy", [], [])
    with pytest.raises(DataError, match="f1_macro"):
        compute_metric("f1", [0, 1, 2], [0, 1, 2])
    assert compute_metric("f1_macro", [0, 1, 2], [0, 1, 2])["primary"] == pytest.approx(1.0)


def test_chance_is_the_score_of_always_predicting_the_most_common_training_label() -> None:
    from autopeft.train.metrics import chance_score

    train, gold = [1, 1, 1, 0], [1, 0, 0, 1, 1]
    assert chance_score("accuracy", train, gold) == pytest.approx(0.6)
    assert chance_score("f1", train, gold) == pytest.approx(2 * 0.6 / 1.6)  # all positive: precision 0.6, recall 1
    assert chance_score("f1", [0, 0, 1], gold) == 0.0  # all negative: no positive predicted
    assert chance_score("matthews", train, gold) == 0.0
    assert chance_score("pearson_spearman", [0.1, 0.9], [0.2, 0.4]) == 0.0
    assert chance_score("accuracy", [], gold) == 0.0


def test_the_demo_tasks_chance_is_its_majority_rate() -> None:
    from autopeft.train.tasks.loader import load_task
    from autopeft.train.tasks.spec import TaskSpec

    task = load_task(TaskSpec(name="demo"))
    labels = [e.label for e in task.train]
    majority = max(set(labels), key=labels.count)
    rate = sum(e.label == majority for e in task.validation) / len(task.validation)
    assert task.chance == pytest.approx(rate) and 0.0 < task.chance < 1.0
