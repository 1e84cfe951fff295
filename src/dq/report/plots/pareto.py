"""Accuracy against a fairness gap, one point per run, with the Pareto front marked.

The front is the set of runs no other run beats on both counts (higher accuracy and a
smaller gap). ``non_dominated`` is written here because reports must not import
``dq.sweep`` (whose front comes from an Optuna study, not from run directories).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dq import metric_keys as keys
from dq.report import degenerate
from dq.report.plots.select import RunGroup, fair_groups
from dq.report.plots.style import (
    FRONT_COLOR,
    MAX_GROUP_LEGEND,
    Drawn,
    colors,
    finish_axes,
    new_figure,
    percent,
    shorten,
    suptitle,
)

DEGENERATE_LABEL = "degenerate: constant predictor or diverged, not on the front"
DEGENERATE_COLOR = "0.45"
GAPS = {
    "dp": (keys.test(keys.DP_DIFF), "demographic-parity gap"),
    "eo": (keys.test(keys.EO_DIFF), "equalized-odds gap"),
}


def non_dominated(points: Sequence[Sequence[float]], maximise: Sequence[bool]) -> list[int]:
    """Indices (ascending) of the points that no other point dominates.

    A point dominates another when it is at least as good on every coordinate and
    strictly better on one; ``maximise[i]`` says whether coordinate ``i`` is better high.
    Duplicates do not dominate each other, so all copies of a front point are kept. Points
    with a NaN coordinate are never on the front and dominate nothing.
    """
    signs = [1.0 if up else -1.0 for up in maximise]
    scored = [
        None if any(math.isnan(v) for v in point) else [s * float(v) for s, v in zip(signs, point, strict=True)]
        for point in points
    ]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))

    return [
        i for i, p in enumerate(scored) if p is not None and not any(q is not None and dominates(q, p) for q in scored)
    ]


def pareto_figure(groups: Sequence[RunGroup], gap: str, title: str, swept: Sequence[str]) -> Drawn | None:
    """Test accuracy (%) against the ``gap`` ("dp" or "eo") in percentage points, a point
    per run coloured by its group, the front drawn as a step line through ringed points.
    None when fewer than two runs have both numbers (runs whose groups are classes count
    for none: a gap between classes is no fairness measure).

    Degenerate runs (dq.report.degenerate: constant predictors, diverged runs) are drawn as
    grey crosses and kept off the front: a constant predictor's gap of 0 is no fairness, so
    as a front point it would be the front's fairest endpoint and dominate every fair model
    with a small gap."""
    gap_key, gap_name = GAPS[gap]
    points, marked = [], []
    for group_index, group in enumerate(groups):
        for run in fair_groups(group.runs):
            gap_value, accuracy = run.metrics.get(gap_key), run.metrics.get(keys.test(keys.ACCURACY))
            if isinstance(gap_value, int | float) and isinstance(accuracy, int | float):
                point = (group_index, percent(gap_value), percent(accuracy))
                (marked if degenerate.flags(run.metrics) else points).append(point)
    if len(points) + len(marked) < 2:
        return None
    fig, (ax,) = new_figure(size=(6.2, 4.4))
    if len(groups) > MAX_GROUP_LEGEND:  # e.g. an Optuna search: every trial its own group
        label = f"runs ({len(groups)} settings)"
        ax.scatter([x for _, x, _ in points], [y for _, _, y in points], s=30, label=label, zorder=3)
        n = 2
    else:
        palette = colors(len(groups))
        for index, group in enumerate(groups):
            xs = [x for g, x, _ in points if g == index]
            ys = [y for g, _, y in points if g == index]
            if xs:
                ax.scatter(xs, ys, color=palette[index], s=36, label=shorten(group.label), zorder=3)
        n = len({g for g, _, _ in points}) + 1
    front = sorted(
        (points[i] for i in non_dominated([(x, y) for _, x, y in points], (False, True))), key=lambda p: (p[1], p[2])
    )
    fx, fy = [p[1] for p in front], [p[2] for p in front]
    if front:
        ax.step(
            fx,
            fy,
            where="post",
            color=FRONT_COLOR,
            linewidth=1.2,
            label=f"Pareto front ({len(front)} run{'s' if len(front) > 1 else ''})",
            zorder=2,
        )
        ax.scatter(fx, fy, s=120, facecolors="none", edgecolors=FRONT_COLOR, linewidths=1.4, zorder=4)
    if marked:
        ax.scatter(
            [x for _, x, _ in marked],
            [y for _, _, y in marked],
            marker="x",
            color=DEGENERATE_COLOR,
            s=60,
            label=f"{DEGENERATE_LABEL} ({len(marked)})",
            zorder=5,
        )
        n += 1
    finish_axes(ax, f"{gap_name} (percentage points, lower is fairer)", "test accuracy (%)", series=n)
    suptitle(fig, f"{title}: test accuracy against {gap_name}, one point per run", swept)
    coloured = ", coloured by group of runs" if len(groups) <= MAX_GROUP_LEGEND else ""
    words = (
        f"Test accuracy against the {gap_name} for {len(points) + len(marked)} runs{coloured}; the step line "
        "and ringed points mark the Pareto front (higher accuracy, smaller gap)."
    )
    if marked:
        words += (
            f" {len(marked)} degenerate run(s) (grey crosses: constant predictors, whose gap is 0 by construction, "
            "or diverged runs) are left off the front."
        )
    return fig, words
