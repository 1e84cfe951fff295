"""Bootstrap 95% intervals of the group metrics, all resamples at once.

The resamples are fairlearn's: ``MetricFrame(..., n_boot, random_state=seed)`` draws
``n_boot`` seeds from ``np.random.default_rng(seed)`` and each resample's rows (the whole
split, with replacement) from ``np.random.RandomState(that seed)`` (through pandas'
``DataFrame.sample``); :func:`fairlearn_resamples` draws the same row indices, so dq's
intervals are exactly fairlearn's (tests/test_intervals.py compares them to 1e-12).

What is computed from them is vectorised: one ``np.bincount`` over a [resample, row] index
matrix counts, per resample and group, every (label, prediction) pair; every statistic is
read off those counts. Why: fairlearn computes each metric by a pandas ``groupby`` per
resample: 200 resamples of Adult's test split took 0.99 CPU s that way, more than an epoch
of its MLP, and take 0.07 s counted at once (``scripts/bench_intervals.py`` prints the two
side by side). The statistics are

- ``accuracy`` (overall) and ``group_accuracy/<g>`` per group, and
  ``worst_group_accuracy`` (the smallest over the groups present);
- the DP and EO gaps (``keys.DP_DIFF``, ``keys.EO_DIFF``), the same statistics as :func:`dq.metrics.fairness.fairness_gaps`:
  per class (class 1 for binary tasks, each class one-vs-rest otherwise) the largest minus
  the smallest group rate (selection rate; TPR and FPR, the larger of the two for EO),
  then the largest over classes. TPR (FPR) is 0 where a group has no positives
  (negatives), as fairlearn's confusion-matrix rates give.

Why each resample's statistic is kept: fairlearn's ``difference_ci`` gives the interval of
each rate's gap on its own, but dq's gaps are the *maximum* over classes (and, for EO, over
TPR and FPR). The interval of a maximum is not the maximum of intervals, so the maximum is
taken on each resample and its 2.5% and 97.5% quantiles are the interval (``np.nanquantile``,
as fairlearn computes its own quantiles). A group absent from a resample has no rates there
(NaN), as in fairlearn's frame.

A percentile interval of a gap (a maximum of absolute differences) is biased upwards: when
the gap is near 0 the interval can lie wholly above the point estimate.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from dq import metric_keys as keys

CI_QUANTILES = (0.025, 0.975)

# The statistics' names are their metric keys below the split (test/<name>).
GROUP_ACCURACY, WORST_GROUP_ACCURACY = "group_accuracy", "worst_group_accuracy"

# Resamples are counted in chunks of at most this many drawn rows (8 bytes each, a few
# arrays of them alive at once): 10,000 resamples of a 100,000-row split stay in ~100 MB.
CHUNK_ROWS = 4_000_000

__all__ = [
    "CI_QUANTILES",
    "GROUP_ACCURACY",
    "WORST_GROUP_ACCURACY",
    "Estimate",
    "GroupIntervals",
    "fairlearn_resamples",
    "group_intervals",
    "group_rates",
    "interval_metrics",
    "rate_names",
]


def _classes(num_classes: int) -> list[int]:
    return [1] if num_classes == 2 else list(range(num_classes))


def rate_names(num_classes: int) -> list[str]:
    """The last axis of :func:`group_rates`: accuracy, then per class its selection rate, TPR, FPR."""
    return ["accuracy"] + [f"{rate}/{cls}" for cls in _classes(num_classes) for rate in ("selection", "tpr", "fpr")]


def fairlearn_resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices [resamples, n] of fairlearn's ``n_boot`` bootstrap resamples of ``n`` rows
    under ``random_state=seed``, in chunks of at most ``CHUNK_ROWS`` rows.

    fairlearn gives each resample its own ``RandomState``, so the draw is one call per
    resample. pandas draws ``RandomState(s).choice(n, n, replace=True)``, which is
    ``randint(0, n, n)`` on that state (numpy's legacy streams are frozen); reseeding one
    ``RandomState`` gives the same numbers at a quarter of the cost (200 resamples of 16,281
    rows: 0.06 s against 0.21 s for a new state and ``choice`` each).
    """
    seeds = np.random.default_rng(seed).integers(0, np.iinfo(np.uint32).max, size=n_boot, dtype=np.uint32)
    state = np.random.RandomState()
    per_chunk = max(1, CHUNK_ROWS // max(n, 1))
    for first in range(0, n_boot, per_chunk):
        chunk = []
        for resample_seed in seeds[first : first + per_chunk]:
            state.seed(resample_seed)
            chunk.append(state.randint(0, n, n))
        yield np.stack(chunk)


def _confusions(cell: np.ndarray, cells: int, rows: np.ndarray) -> np.ndarray:
    """[resamples, cells] counts of each row's ``cell`` (group, label, prediction) in each
    resample, ``rows`` [resamples, n] its row indices: one bincount for all of them."""
    offset = np.arange(len(rows))[:, None] * cells
    return np.bincount((cell[rows] + offset).ravel(), minlength=len(rows) * cells).reshape(len(rows), cells)


def group_rates(counts: np.ndarray, num_classes: int) -> np.ndarray:
    """[..., groups, metric] rates (:func:`rate_names`) from confusion counts [..., groups,
    label, prediction]; NaN for a group without rows."""
    n = counts.sum(axis=(-2, -1))
    present = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = [np.trace(counts, axis1=-2, axis2=-1) / n]
        for cls in _classes(num_classes):
            selected = counts[..., :, cls].sum(axis=-1)
            positives = counts[..., cls, :].sum(axis=-1)
            hits = counts[..., cls, cls]
            negatives = n - positives
            columns.append(selected / n)
            columns.append(np.where(positives > 0, hits / positives, 0.0))
            columns.append(np.where(negatives > 0, (selected - hits) / negatives, 0.0))
    rates = np.stack(columns, axis=-1)
    return np.where(present[..., None], rates, np.nan)


@dataclass
class Estimate:
    """A point estimate with its bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass
class GroupIntervals:
    """Point estimates and intervals by name: ``accuracy``, ``group_accuracy/<g>``,
    ``worst_group_accuracy`` and the DP/EO gaps: each statistic's key below the split."""

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
    resamples, fairlearn's draw from ``seed`` (same inputs and seed → same intervals)."""
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    present, position = np.unique(np.asarray(group), return_inverse=True)  # fairlearn's by_group index
    shape = (len(present), num_classes, num_classes)
    cell = np.ravel_multi_index((position, y, pred), shape)  # the (group, label, prediction) of each row
    cells = int(np.prod(shape))
    point = _confusions(cell, cells, np.arange(len(y))[None]).reshape(1, *shape)
    resampled = [_confusions(cell, cells, rows) for rows in fairlearn_resamples(len(y), n_boot, seed)]
    counts = np.concatenate(resampled).reshape(n_boot, *shape)
    names = rate_names(num_classes)
    point_by_group, by_group = group_rates(point, num_classes), group_rates(counts, num_classes)
    accuracy, overall = (np.trace(c, axis1=-2, axis2=-1).sum(axis=1) / len(y) for c in (point, counts))

    out: dict[str, Estimate] = {keys.ACCURACY: Estimate(float(accuracy[0]), *_quantiles(overall))}
    for column, code in enumerate(present):
        name = f"{GROUP_ACCURACY}/{keys.key_part(group_names[int(code)])}"
        out[name] = Estimate(float(point_by_group[0, column, 0]), *_quantiles(by_group[:, column, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        worst = np.nanmin(by_group[:, :, 0], axis=1)
    out[WORST_GROUP_ACCURACY] = Estimate(float(np.nanmin(point_by_group[0, :, 0])), *_quantiles(worst))
    selection = [i for i, n in enumerate(names) if n.startswith("selection/")]
    odds = [i for i, n in enumerate(names) if n.startswith(("tpr/", "fpr/"))]
    for key, columns in ((keys.DP_DIFF, selection), (keys.EO_DIFF, odds)):
        gap = float(_worst_gap(point_by_group, columns)[0])
        out[key] = Estimate(gap, *_quantiles(_worst_gap(by_group, columns)))
    return GroupIntervals(out)


def interval_metrics(intervals: GroupIntervals, key: Callable[[str], str | None]) -> dict[str, float]:
    """Flat ``<key>/ci_low`` and ``<key>/ci_high`` entries, ``key(name)`` naming each
    statistic's metric key (None: leave it out). Undefined statistics (NaN) get none."""
    out: dict[str, float] = {}
    for name, estimate in intervals.estimates.items():
        metric = key(name)
        if metric is None or np.isnan(estimate.value):
            continue
        out[keys.ci_low(metric)] = estimate.low
        out[keys.ci_high(metric)] = estimate.high
    return out
