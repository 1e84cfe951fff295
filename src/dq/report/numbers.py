"""Mean ± std over seeds, and how a metric's numbers are printed.

One format per metric (chosen from all its groups' numbers) keeps a table's column
aligned: counts such as ``params/total`` as integers, rates and accuracies with three
decimals, very small values (an infidelity of 3e-4) in scientific notation so they do
not print as ``0.000``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stats:
    """A metric over a group's runs: mean, sample std (ddof=1; NaN for one run), n."""

    mean: float
    std: float
    n: int


def stats(values: Sequence[float]) -> Stats:
    array = np.asarray(values, dtype=float)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else math.nan
    return Stats(float(np.mean(array)), std, len(array))


def formatter(column: Sequence[Stats], integer: bool = False) -> Callable[[float], str]:
    """The format of one metric's numbers, from every group's mean and std.

    ``integer`` (every run wrote the metric as a JSON integer: a count): whole numbers
    as such, others with one decimal. Otherwise ``.2e`` when the largest magnitude is
    below 0.01, three decimals below 1000, one from there up.
    """
    if integer:
        return lambda x: f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"
    means = [s.mean for s in column if math.isfinite(s.mean)]
    if not means:
        return lambda x: f"{x:.3f}"
    largest = max(abs(m) for m in means)
    if 0 < largest < 0.01:
        return lambda x: f"{x:.2e}"
    if largest >= 1000:
        return lambda x: f"{x:.1f}"
    return lambda x: f"{x:.3f}"
