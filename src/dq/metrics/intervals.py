"""Bootstrap 95% intervals of the group metrics, through fairlearn's MetricFrame.

One ``MetricFrame`` per set of predictions, with ``n_boot``, ``ci_quantiles=[0.025, 0.975]``
and ``random_state`` (the run's seed): fairlearn draws the resamples (rows with
replacement, the whole split at once) and computes every metric overall and per group on
each. From those resamples come the intervals of

- ``accuracy`` (overall) and ``group_accuracy/<g>`` per group, and
  ``worst_group_accuracy`` (the smallest over the groups present);
- ``dp_diff`` and ``eo_diff``, the same statistics as :func:`dq.metrics.fairness.fairness_gaps`:
  per class (class 1 for binary tasks, each class one-vs-rest otherwise) the largest minus
  the smallest group rate (selection rate; TPR and FPR, the larger of the two for EO),
  then the largest over classes.

Why the resamples are kept: fairlearn's ``difference_ci`` gives the interval of each
rate's gap on its own, but dq's gaps are the *maximum* over classes (and, for EO, over
TPR and FPR). The interval of a maximum is not the maximum of intervals, so the maximum is
taken on each resample and its 2.5% and 97.5% quantiles are the interval (``np.nanquantile``,
as fairlearn computes its own quantiles). tests/test_intervals.py checks that this gives
exactly fairlearn's ``by_group_ci`` and ``difference_ci`` where those express the statistic.

Why two methods of ``MetricFrame`` are overridden (both private in fairlearn 0.15):
fairlearn stacks every metric argument element by element (``np.stack`` over a 1-D
column): 50 resamples of 16,281 rows (Adult's test split size) with these 4 metrics took
36 s on a busy 2-core machine (about 140 s for 200); reading the columns directly, once per
group, gives the same values (tested) and took 1.5 s for 200 resamples there (10 classes,
10 groups, 10,000 rows: 31 metrics, 3.2 s). And fairlearn computes every quantile it offers (ratios, differences to the
overall value) for every resample, then drops the resamples; dq needs the resamples and
only the quantiles above.

The metric functions are fairlearn's definitions written for 0/1 columns: selection rate,
TPR and FPR (0 where a group has no positives, or no negatives, as fairlearn's
confusion-matrix rates give), accuracy; tests check them against fairlearn's own.

A percentile interval of a gap (a maximum of absolute differences) is biased upwards: when
the gap is near 0 the interval can lie wholly above the point estimate.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from fairlearn.metrics._annotated_metric_function import AnnotatedMetricFunction

from dq.metrics.fairness import key_part
from dq.rundir.layout import CI_HIGH, CI_LOW

CI_QUANTILES = (0.025, 0.975)

__all__ = ["CI_QUANTILES", "Estimate", "GroupIntervals", "group_intervals", "interval_metrics"]


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def _selection_rate(cls: int, y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(pred == cls))


def _rate_among(cls: int, positives: bool, y: np.ndarray, pred: np.ndarray) -> float:
    """TPR (``positives``) or FPR of class ``cls`` one-vs-rest; 0 when the condition is empty."""
    condition = (y == cls) if positives else (y != cls)
    count = int(condition.sum())
    return float(np.count_nonzero(pred[condition] == cls) / count) if count else 0.0


def _classes(num_classes: int) -> list[int]:
    return [1] if num_classes == 2 else list(range(num_classes))


def rate_metrics(num_classes: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """The metrics the frame computes: accuracy, and per class its selection rate, TPR, FPR."""
    metrics: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"accuracy": _accuracy}
    for cls in _classes(num_classes):
        metrics[f"selection/{cls}"] = partial(_selection_rate, cls)
        metrics[f"tpr/{cls}"] = partial(_rate_among, cls, True)
        metrics[f"fpr/{cls}"] = partial(_rate_among, cls, False)
    return metrics


class _LastColumns:
    """The ``y_true``/``y_pred`` arrays of the DataFrame last asked for. fairlearn calls every
    metric in turn on one group's DataFrame, so they are read once per group, not once per
    metric (pandas' column lookup was half the time with 31 metrics: 10 classes)."""

    def __init__(self) -> None:
        self.frame: Any = None
        self.arrays: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))

    def of(self, df: Any) -> tuple[np.ndarray, np.ndarray]:
        if df is not self.frame:  # identity is safe: the reference held keeps the id unique
            self.frame, self.arrays = df, (df["y_true"].to_numpy(), df["y_pred"].to_numpy())
        return self.arrays


class _Columns(AnnotatedMetricFunction):
    """A metric called on the frame's ``y_true``/``y_pred`` columns as they are (1-D labels),
    without fairlearn's element-by-element ``np.stack``."""

    def __init__(self, func: Callable, name: str | None, columns: _LastColumns) -> None:
        super().__init__(func=func, name=name)
        self.columns = columns

    def __call__(self, df: Any) -> Any:
        return self.func(*self.columns.of(df))


class _ResampledFrame(MetricFrame):
    """fairlearn's MetricFrame that keeps its bootstrap resamples (``self.resamples``)."""

    def _construct_annotated_metric_function(
        self, func: Callable, name: str | None, sample_params: dict[str, Any], all_data: pd.DataFrame
    ) -> AnnotatedMetricFunction:
        if not hasattr(self, "_columns"):
            self._columns = _LastColumns()
        return _Columns(func=func, name=name, columns=self._columns)

    def _populate_results_ci(self, bootstrap_samples: list[Any], ci_quantiles: list[float]) -> None:
        self.resamples = bootstrap_samples


@dataclass
class Estimate:
    """A point estimate with its bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass
class GroupIntervals:
    """Point estimates and intervals by name: ``accuracy``, ``group_accuracy/<g>``,
    ``worst_group_accuracy``, ``dp_diff``, ``eo_diff``."""

    estimates: dict[str, Estimate] = field(default_factory=dict)


def _quantiles(samples: np.ndarray) -> tuple[float, float]:
    if np.all(np.isnan(samples)):
        return float("nan"), float("nan")
    low, high = np.nanquantile(samples, list(CI_QUANTILES))
    return float(low), float(high)


def _worst_gap(by_group: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """Largest over ``columns`` of (max − min over groups); NaN where fewer than two groups
    are present. ``by_group`` is [resample, group, metric]."""
    rates = by_group[:, :, list(columns)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice: a group or class absent
        gaps = np.nanmax(np.nanmax(rates, axis=1) - np.nanmin(rates, axis=1), axis=1)
    present = (~np.isnan(by_group[:, :, 0])).sum(axis=1)
    return np.where(present >= 2, gaps, np.nan)


def group_intervals(
    y: np.ndarray,
    pred: np.ndarray,
    group: np.ndarray,
    group_names: Sequence[str],
    num_classes: int,
    n_boot: int,
    seed: int,
) -> GroupIntervals:
    """Every group metric of predictions ``pred`` with its bootstrap interval over ``n_boot``
    resamples drawn by fairlearn from ``seed`` (same inputs and seed → same intervals)."""
    metrics = rate_metrics(num_classes)
    frame = _ResampledFrame(
        metrics=metrics,
        y_true=np.asarray(y),
        y_pred=np.asarray(pred),
        sensitive_features=np.asarray(group),
        n_boot=n_boot,
        ci_quantiles=list(CI_QUANTILES),
        random_state=seed,
    )
    names = list(metrics)
    index = frame.by_group.index
    point_by_group = frame.by_group[names].to_numpy(dtype=float)[None]
    by_group = np.stack([r.by_group.reindex(index)[names].to_numpy(dtype=float) for r in frame.resamples])
    overall = np.array([r.overall[names].to_numpy(dtype=float) for r in frame.resamples])

    out: dict[str, Estimate] = {"accuracy": Estimate(float(frame.overall["accuracy"]), *_quantiles(overall[:, 0]))}
    for position, code in enumerate(index):
        name = f"group_accuracy/{key_part(group_names[int(code)])}"
        out[name] = Estimate(float(point_by_group[0, position, 0]), *_quantiles(by_group[:, position, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        worst = np.nanmin(by_group[:, :, 0], axis=1)
    out["worst_group_accuracy"] = Estimate(float(np.nanmin(point_by_group[0, :, 0])), *_quantiles(worst))
    selection = [i for i, n in enumerate(names) if n.startswith("selection/")]
    odds = [i for i, n in enumerate(names) if n.startswith(("tpr/", "fpr/"))]
    for key, columns in (("dp_diff", selection), ("eo_diff", odds)):
        point = float(_worst_gap(point_by_group, columns)[0])
        out[key] = Estimate(point, *_quantiles(_worst_gap(by_group, columns)))
    return GroupIntervals(out)


def interval_metrics(intervals: GroupIntervals, key: Callable[[str], str | None]) -> dict[str, float]:
    """Flat ``<key>/ci_low`` and ``<key>/ci_high`` entries, ``key(name)`` naming each
    statistic's metric key (None: leave it out). Undefined statistics (NaN) get none."""
    out: dict[str, float] = {}
    for name, estimate in intervals.estimates.items():
        metric = key(name)
        if metric is None or np.isnan(estimate.value):
            continue
        out[f"{metric}/{CI_LOW}"] = estimate.low
        out[f"{metric}/{CI_HIGH}"] = estimate.high
    return out
