"""Group metrics through fairlearn: per-group accuracy, demographic parity and
equalized odds differences.

For binary tasks the positive class is class 1, as in fairlearn. For multi-class tasks
each class is scored one-vs-rest and the largest difference over classes is reported
(the worst class decides), so the number means the same thing for 2 or 10 classes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import accuracy_score

from dq import metric_keys as keys


def group_accuracy(y: np.ndarray, pred: np.ndarray, group: np.ndarray, group_names: Sequence[str]) -> dict[str, float]:
    """Accuracy per group, keyed by the group's name made safe for flat metric keys."""
    frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=group)
    return {keys.key_part(group_names[int(g)]): float(value) for g, value in frame.by_group.items()}


def _one_vs_rest(y: np.ndarray, pred: np.ndarray, num_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    classes = [1] if num_classes == 2 else range(num_classes)
    return [((y == c).astype(int), (pred == c).astype(int)) for c in classes]


def fairness_gaps(y: np.ndarray, pred: np.ndarray, group: np.ndarray, num_classes: int) -> dict[str, float]:
    """The demographic-parity and equalized-odds gaps (``keys.DP_DIFF``, ``keys.EO_DIFF``);
    NaN when fewer than two groups are present."""
    if len(np.unique(group)) < 2:
        return {keys.DP_DIFF: float("nan"), keys.EO_DIFF: float("nan")}
    dp, eo = [], []
    with warnings.catch_warnings():
        # A group without positives (or negatives) has an undefined rate; fairlearn warns and
        # that class then contributes NaN, which nanmax skips.
        warnings.simplefilter("ignore")
        for y_c, pred_c in _one_vs_rest(y, pred, num_classes):
            dp.append(demographic_parity_difference(y_c, pred_c, sensitive_features=group))
            eo.append(equalized_odds_difference(y_c, pred_c, sensitive_features=group))
    return {
        keys.DP_DIFF: float(np.nanmax(dp)),
        keys.EO_DIFF: float(np.nanmax(eo)) if not np.all(np.isnan(eo)) else float("nan"),
    }
