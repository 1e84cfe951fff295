"""Metrics of a trained classifier on one split, as flat ``<prefix>/<name>`` keys.

fairlearn (and with it scikit-learn) loads only for data with groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dq import metric_keys as keys
from dq.metrics.classification import accuracy, cross_entropy, expected_calibration_error

__all__ = ["accuracy", "cross_entropy", "expected_calibration_error", "split_metrics"]


def split_metrics(
    logits: torch.Tensor,
    y: torch.Tensor,
    prefix: str,
    group: torch.Tensor | None = None,
    group_names: Sequence[str] = (),
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """accuracy, loss, ece and, where the split has groups, per-group accuracy, the worst
    group's (``<prefix>/worst_group_accuracy``: the smallest over the groups present) and the DP/EO gaps;
    with ``n_boot`` > 0 also their bootstrap 95% intervals (``<key>/ci_low``, ``<key>/ci_high``,
    dq.metrics.intervals, resamples drawn from ``seed``), the overall accuracy's among them."""
    logits, y = logits.float().cpu(), y.cpu()
    out = {
        keys.metric(prefix, keys.ACCURACY): accuracy(logits, y),
        keys.metric(prefix, keys.LOSS): cross_entropy(logits, y),
        keys.metric(prefix, keys.ECE): expected_calibration_error(logits, y),
    }
    if group is not None and len(group_names) > 0:
        from dq.metrics.fairness import fairness_gaps, group_accuracy  # fairlearn: only for data with groups

        y_np, pred_np, group_np = y.numpy(), logits.argmax(dim=1).numpy(), group.cpu().numpy()
        by_group = group_accuracy(y_np, pred_np, group_np, group_names)
        for name, value in by_group.items():
            out[keys.group_accuracy(name, prefix)] = value
        out[keys.worst_accuracy(keys.GROUP, prefix)] = min(by_group.values())
        for name, value in fairness_gaps(y_np, pred_np, group_np, logits.shape[1]).items():
            out[keys.metric(prefix, name)] = value
        if n_boot > 0:
            out.update(_intervals(y_np, pred_np, group_np, group_names, logits.shape[1], n_boot, seed, prefix))
    return out


def _intervals(
    y: np.ndarray,
    pred: np.ndarray,
    group: np.ndarray,
    group_names: Sequence[str],
    num_classes: int,
    n_boot: int,
    seed: int,
    prefix: str,
) -> dict[str, float]:
    from dq.metrics.intervals import group_intervals, interval_metrics

    intervals = group_intervals(y, pred, group, group_names, num_classes, n_boot, seed)
    return interval_metrics(intervals, lambda name: keys.metric(prefix, name))
