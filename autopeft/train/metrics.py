"""Task metrics, computed by scikit-learn and SciPy; every value is higher-is-better.

`compute_metric` returns the named metric, a few companions (accuracy beside F1, Spearman beside
Pearson, ...) and `primary`, the single number the search optimises. The libraries are imported
inside the functions so that reading a recipe (which validates metric names) stays light.

STS-B's primary is the mean of Pearson and Spearman (`pearson_spearman`), as GLUE's leaderboard
scores tasks with two metrics; Spearman alone ignores calibration and Pearson alone is swayed by a
few outliers, so the mean is the steadier target for a search. `pearson` and `spearman` alone are
available by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import numpy as np

from autopeft.errors import ConfigError, DataError

MetricName = Literal["accuracy", "f1", "f1_macro", "matthews", "pearson", "spearman", "pearson_spearman"]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
REGRESSION_METRICS: frozenset[str] = frozenset({"pearson", "spearman", "pearson_spearman"})

ArrayLike = Sequence[float] | Sequence[int] | np.ndarray[Any, Any]


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(labels, predictions))


def f1(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Binary F1 of class 1; 0 when nothing is predicted positive (no warning)."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0))


def f1_macro(predictions: ArrayLike, labels: ArrayLike) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predictions, average="macro", zero_division=0.0))


def matthews(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation; 0 when predictions or labels are constant (sklearn's convention too)."""
    from sklearn.metrics import matthews_corrcoef

    if _constant(predictions) or _constant(labels):
        return 0.0
    return float(matthews_corrcoef(labels, predictions))


def pearson(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Pearson correlation; 0 when either side is constant (SciPy would warn and return NaN)."""
    from scipy.stats import pearsonr

    if _constant(predictions) or _constant(labels):
        return 0.0
    return float(pearsonr(np.asarray(predictions, float), np.asarray(labels, float)).statistic)


def spearman(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Spearman rank correlation; 0 when either side is constant."""
    from scipy.stats import spearmanr

    if _constant(predictions) or _constant(labels):
        return 0.0
    return float(spearmanr(np.asarray(predictions, float), np.asarray(labels, float)).statistic)


def _constant(values: ArrayLike) -> bool:
    arr = np.asarray(values)
    return bool(arr.size == 0 or np.all(arr == arr.flat[0]))


_COMPANIONS: dict[str, tuple[str, ...]] = {
    "accuracy": ("accuracy",),
    "f1": ("f1", "accuracy"),
    "f1_macro": ("f1_macro", "accuracy"),
    "matthews": ("matthews", "accuracy"),
    "pearson": ("pearson", "spearman"),
    "spearman": ("spearman", "pearson"),
    "pearson_spearman": ("pearson", "spearman"),
}
_FUNCTIONS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "f1_macro": f1_macro,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
}


def compute_metric(name: str, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Values of metric `name` and its companions, plus `primary` (the value a search maximises).

    Classification metrics take predicted class indices (argmax already applied); regression
    metrics take the predicted scores.
    """
    if name not in _COMPANIONS:
        raise ConfigError(f"unknown metric {name!r}; accepted: {', '.join(METRIC_NAMES)}", field="metric")
    preds, gold = np.asarray(predictions), np.asarray(labels)
    if preds.shape != gold.shape or preds.ndim != 1:
        raise DataError(f"metric {name}: predictions {preds.shape} and labels {gold.shape} must be equal 1-d")
    if preds.size == 0:
        raise DataError(f"metric {name}: no predictions to score")
    if name == "f1" and not set(np.unique(gold)).issubset({0, 1}):
        raise DataError("metric f1 is binary (labels 0/1); use f1_macro for more classes")
    values = {key: _FUNCTIONS[key](preds, gold) for key in _COMPANIONS[name]}
    if name == "pearson_spearman":
        values["primary"] = (values["pearson"] + values["spearman"]) / 2
    else:
        values["primary"] = values[name]
    return values


def chance_score(metric: str, train_labels: ArrayLike, eval_labels: ArrayLike) -> float:
    """The primary score of always predicting the training set's most common label (its mean for regression).

    What a model that learnt nothing from the text reaches: SST-2 accuracy ~0.51, MRPC F1 ~0.81, 0 for
    Matthews and correlations. A study measures its hypervolume from here, so a trial no better than
    this adds nothing to a front, and Hyperband does not promote it for being small.
    """
    train, gold = np.asarray(train_labels), np.asarray(eval_labels)
    if train.size == 0 or gold.size == 0:
        return 0.0
    if metric in REGRESSION_METRICS:
        return 0.0  # a constant prediction has no correlation with anything
    values, counts = np.unique(train, return_counts=True)
    constant = np.full(gold.shape, values[int(np.argmax(counts))])
    return max(0.0, compute_metric(metric, constant, gold)["primary"])

