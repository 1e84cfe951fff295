"""The table's trade-off figure: each row's means in a plane of two metrics (a fairness gap
against accuracy, say), our rows, baselines and the source's reference rows told apart,
and the Pareto front of the rows that have numbers marked.

One function, ``pareto_figure``: the place to swap in a shared dq.report.plots figure
if one comes to fit table rows (means with error bars, reference points) better.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from dq import metric_keys as keys
from dq.paper.compare import RowResult
from dq.paper.plan import BASELINE, REFERENCE, RUN
from dq.report.plots import Figure, non_dominated
from dq.rundir.write import atomic_write

# What the axes say beside the metric name.
UNITS = {
    keys.ACCURACY: "fraction correct",
    keys.DP_DIFF: "demographic parity difference",
    keys.EO_DIFF: "equalized odds difference",
}
STYLE = {RUN: ("o", "tab:blue", "ours (dq runs)"), BASELINE: ("s", "tab:green", "baseline (same split)"),
         REFERENCE: ("^", "tab:gray", "source (different setting)")}  # fmt: skip


DEGENERATE = "degenerate seed (constant predictor or diverged), not on the front"


def _axis(metric: str) -> str:
    unit = UNITS.get(metric.rpartition("/")[2])
    return f"{metric} ({unit})" if unit else metric


def pareto_figure(results: Sequence[RowResult], x: str, y: str, title: str, path: Path) -> Figure | None:
    """Draw ``results`` in the (``x``, ``y``) plane into ``path`` (PNG); None when fewer
    than two rows have both numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for result in results:
        mx, my = result.mean(x), result.mean(y)
        if mx is not None and my is not None:
            sx = None if result.reference else result.values[x].std
            sy = None if result.reference else result.values[y].std
            rows.append((result, mx, my, sx, sy))
    if len(rows) < 2:
        return None
    figure, axes = plt.subplots(figsize=(7.5, 5))
    for kind, (marker, color, name) in STYLE.items():
        mine = [row for row in rows if row[0].planned.kind == kind]
        for number, (result, mx, my, sx, sy) in enumerate(mine):
            axes.errorbar(
                mx, my, xerr=sx, yerr=sy, fmt=marker, color=color, capsize=3, label=name if number == 0 else None
            )
            axes.annotate(result.label, (mx, my), textcoords="offset points", xytext=(5, 4), fontsize=7)
    # A row with a degenerate seed (a constant predictor's gap is 0 by construction) is
    # crossed out and kept off the front, where it would be the fairest endpoint.
    marked = [row for row in rows if row[0].degenerate]
    for number, (_, mx, my, _, _) in enumerate(marked):
        axes.scatter(mx, my, marker="x", s=90, color="black", zorder=5, label=DEGENERATE if number == 0 else None)
    ours = [row for row in rows if not row[0].reference and not row[0].degenerate]
    points = [(mx, my) for _, mx, my, _, _ in ours]  # lower x (gap) and higher y (accuracy) are better
    front = [ours[i] for i in sorted(non_dominated(points, (False, True)), key=lambda i: points[i][0])]
    axes.plot(
        [r[1] for r in front], [r[2] for r in front], "--", color="tab:red", label="Pareto front (ours and baselines)"
    )
    axes.set_xlabel(_axis(x) + " — lower is better")
    axes.set_ylabel(_axis(y) + " — higher is better")
    swept = sorted({item.partition("=")[0] for r in results for item in r.planned.overrides if "=" in item})
    subtitle = f" — rows vary {', '.join(swept)}" if swept else ""
    axes.set_title(textwrap.fill(title + subtitle, 90), fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    caption = (
        f"{y} against {x}, each row's mean over seeds (bars: ± std), with the Pareto front of ours and the baselines."
    )
    if marked:
        caption += f" Crossed out, off the front: {len(marked)} row(s) with a degenerate seed (see the table's notes)."
    return Figure(path, caption)
