"""Training curves from metrics.jsonl, x = epoch.

For many runs: validation accuracy and training loss, one line per group of runs (mean
over its seeds, band ± std). For one run: every loss term it logged, its train and
validation accuracy, and its validation fairness gaps where it has groups.

A single run's figure (drawn at the end of every ``dq-train``) reads its rows directly;
only the many-run figure loads pandas, which costs a run more than drawing does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.axes import Axes

from dq import metric_keys as keys
from dq.report.collect import RunResult
from dq.report.plots.select import RunGroup, groups_are_classes
from dq.report.plots.style import (
    BAND_ALPHA,
    Drawn,
    colors,
    epoch_ticks,
    finish_axes,
    marker,
    new_figure,
    series_style,
    shorten,
    suptitle,
)

if TYPE_CHECKING:
    import pandas as pd

PERCENT = (keys.ACCURACY, keys.DP_DIFF, keys.EO_DIFF)  # logged as fractions, drawn in %
GROUP_PANELS = (
    (keys.val(keys.ACCURACY), "validation accuracy (%)"),
    (keys.train(keys.LOSS), "training loss (objective, nats)"),
)
GAPS = tuple(keys.val(gap) for gap in keys.GAPS)
NOT_TERMS = {
    keys.train(keys.ACCURACY),
    keys.train("best_epoch"),
    keys.train("selected_epoch"),
    keys.train("epochs_run"),
}


def _frame(runs: Sequence[RunResult]) -> pd.DataFrame:
    """One row per (run, epoch) with every numeric value logged; fractions kept as logged."""
    import pandas as pd  # sweeps only: a single run's figure needs none

    rows = [{"run": i, **row} for i, run in enumerate(runs) for row in run.curves() if "epoch" in row]
    return pd.DataFrame(rows)


def _scaled(column: str, values: Any) -> Any:
    """``values`` (a Series or a float) in the units drawn: fractions as percent."""
    return values * 100.0 if column.rsplit("/", 1)[-1] in PERCENT else values


def _band(
    ax: Axes, frame: pd.DataFrame, column: str, color, label: str | None, marker: str = "o", alpha: float = BAND_ALPHA
) -> None:
    """Mean over runs per epoch, shaded ± std where more than one run logged the epoch."""
    stats = frame.groupby("epoch")[column].agg(["mean", "std", "count"]).dropna(subset=["mean"]).sort_index()
    mean, std = _scaled(column, stats["mean"]), _scaled(column, stats["std"].fillna(0.0))
    ax.plot(stats.index, mean, marker=marker, markersize=4, color=color, label=label)
    if alpha and (stats["count"] > 1).any():
        ax.fill_between(stats.index, mean - std, mean + std, color=color, alpha=alpha, linewidth=0)


def curves_figure(groups: Sequence[RunGroup], title: str, swept: Sequence[str]) -> Drawn | None:
    """Validation accuracy and training loss per epoch, one line per group; None when no
    run logged epochs."""
    frames = [_frame(group.runs) for group in groups]
    panels = [(c, y) for c, y in GROUP_PANELS if any(c in f.columns and f[c].notna().any() for f in frames)]
    if not panels:
        return None
    fig, axes = new_figure(len(panels))
    for ax, (column, ylabel) in zip(axes, panels, strict=True):
        series = 0
        for index, (group, frame) in enumerate(zip(groups, frames, strict=True)):
            if column in frame.columns and frame[column].notna().any():
                color, label, alpha = series_style(index, len(groups), f"{shorten(group.label)} (n={len(group.runs)})")
                _band(ax, frame, column, color, label, marker(index), alpha)
                series += 1
        finish_axes(ax, "epoch", ylabel, series=series)
        epoch_ticks(ax, [e for f in frames if "epoch" in f.columns for e in f["epoch"]])
    suptitle(fig, f"{title}: training curves, mean over seeds ± std", swept)
    words = (
        f"{' and '.join(y.split(' (')[0] for _, y in panels).capitalize()} per epoch, one line per group of runs "
        "(mean over seeds, band ± one standard deviation)."
    )
    return fig, words


def _logged(value: Any) -> bool:
    """A value pandas would count (``notna``): present, not None, not NaN."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _points(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Epochs and ``key``'s value at each (the mean where an epoch was logged twice), sorted
    by epoch and scaled as drawn: one run's line, as ``_band`` draws it for one run."""
    by_epoch: dict[float, list[float]] = {}
    for row in rows:
        if _logged(row.get(key)):
            by_epoch.setdefault(row["epoch"], []).append(float(row[key]))
    epochs = sorted(by_epoch)
    return epochs, [_scaled(key, sum(by_epoch[e]) / len(by_epoch[e])) for e in epochs]


def run_curves_figure(run: RunResult, title: str) -> Drawn | None:
    """One run's logged curves in up to four panels: objective and validation loss, each
    regularizer term, train/validation accuracy, validation fairness gaps (not when the
    groups are classes). None without metrics.jsonl."""
    rows = [row for row in run.curves() if "epoch" in row]
    if not rows:
        return None
    columns = list(dict.fromkeys(key for row in rows for key, value in row.items() if _logged(value)))
    terms = sorted(
        c for c in columns if keys.parse(c).family == keys.TRAIN and c not in NOT_TERMS and c != keys.train(keys.LOSS)
    )
    panels = [
        ("loss (nats)", [c for c in (keys.train(keys.LOSS), keys.val(keys.LOSS)) if c in columns]),
        ("regularizer term value (unweighted, as logged)", terms),
        ("accuracy (%)", [c for c in (keys.train(keys.ACCURACY), keys.val(keys.ACCURACY)) if c in columns]),
        (
            "validation fairness gap (percentage points)",
            [] if groups_are_classes(run) else [c for c in GAPS if c in columns],
        ),
    ]
    panels = [(ylabel, lines) for ylabel, lines in panels if lines]
    if not panels:
        return None
    fig, axes = new_figure(len(panels), size=(4.4, 3.6))
    for ax, (ylabel, lines) in zip(axes, panels, strict=True):
        for index, (color, key) in enumerate(zip(colors(len(lines)), lines, strict=True)):
            ax.plot(*_points(rows, key), marker=marker(index), markersize=4, color=color, label=key)
        finish_axes(ax, "epoch", ylabel, series=len(lines))
        if len(lines) == 1:
            ax.set_title(lines[0], fontsize=9)
        epoch_ticks(ax, [row["epoch"] for row in rows])
    suptitle(fig, f"{title}: training curves per epoch")
    shown = ", ".join(key for _, lines in panels for key in lines)
    return fig, f"This run's curves per epoch: {shown}."
