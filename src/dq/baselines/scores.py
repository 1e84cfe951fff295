"""dq's test metrics of a baseline's predictions, with the same keys and functions as a
run's metrics.json (dq.metric_keys: test accuracy, the DP/EO gaps, per-group accuracy) and, with ``n_boot`` > 0, the same bootstrap intervals
(dq.metrics.intervals), so a table compares like with like."""

from __future__ import annotations

import time

import numpy as np

from dq import metric_keys as keys
from dq.data_records import Splits
from dq.metrics.fairness import fairness_gaps, group_accuracy


def prediction_metrics(splits: Splits, pred: np.ndarray, n_boot: int = 0, seed: int = 0) -> dict[str, float]:
    """Accuracy, DP and EO gaps, per-group and worst-group accuracy of ``pred`` on the test split; with
    ``n_boot`` > 0 their ``/ci_low`` and ``/ci_high`` and ``time/intervals_s``."""
    test, meta = splits.test, splits.meta
    y, group = test.y.numpy(), test.group.numpy()
    metrics = {keys.test(keys.ACCURACY): float(np.mean(pred == y))}
    metrics.update({keys.test(k): v for k, v in fairness_gaps(y, pred, group, meta.num_classes).items()})
    by_group = group_accuracy(y, pred, group, meta.group_names)
    metrics.update({keys.group_accuracy(g): v for g, v in by_group.items()})
    metrics[keys.worst_accuracy(keys.GROUP)] = min(by_group.values())
    if n_boot > 0:
        from dq.metrics.intervals import group_intervals, interval_metrics

        start = time.perf_counter()
        intervals = group_intervals(y, pred, group, meta.group_names, meta.num_classes, n_boot, seed)
        metrics.update(interval_metrics(intervals, keys.test))
        metrics[keys.time("intervals_s")] = time.perf_counter() - start
    return metrics
