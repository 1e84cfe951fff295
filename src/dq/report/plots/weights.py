"""Metrics against a regularizer's weight: for every ``regularizer.<name>.weight`` that
takes at least two values over the runs, one panel per metric of interest (accuracy,
fairness gaps, robust accuracy, whichever exist), a line per setting of the other swept
keys, mean over seeds with a ± std band.

A weight is read from the run's overrides, else from its saved config (a weight set by
an experiment file and never overridden still places the run on the axis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from dq import metric_keys as keys
from dq.report.collect import RunResult, override_key
from dq.report.plots.select import RunGroup, fair_groups, label_of, radii
from dq.report.plots.style import Drawn, finish_axes, new_figure, series_style, shorten, suptitle

FIXED = (
    (keys.test(keys.ACCURACY), "test accuracy (%)"),
    (keys.test(keys.DP_DIFF), "demographic-parity gap (pp)"),
    (keys.test(keys.EO_DIFF), "equalized-odds gap (pp)"),
)
MAX_METRICS = 5


def weight_key(name: str) -> str:
    return f"regularizer.{name}.weight"


def run_weights(run: RunResult) -> dict[str, float]:
    """``{term: weight}`` for this run: overridden weights, then the config's."""
    weights: dict[str, float] = {}
    regularizers = run.config().get("regularizer") or {}
    for name, settings in regularizers.items():
        if isinstance(settings, dict) and isinstance(settings.get("weight"), int | float):
            weights[name] = float(settings["weight"])
    for key, value in run.override_values().items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "regularizer" and parts[2] == "weight":
            try:
                weights[parts[1]] = float(value)
            except ValueError:
                continue
    return weights


def swept_terms(groups: Sequence[RunGroup]) -> tuple[list[str], dict[int, dict[str, float]]]:
    """Terms whose weight takes two or more values, and each run's weights (by ``id``)."""
    weights = {id(run): run_weights(run) for group in groups for run in group.runs}
    names = sorted({name for w in weights.values() for name in w})
    swept = [n for n in names if len({w.get(n, math.nan) for w in weights.values()} - {math.nan}) > 1]
    return swept, weights


def _metrics(runs: Sequence[RunResult]) -> list[tuple[str, str]]:
    fair = fair_groups(runs)
    present = [
        (k, label)
        for k, label in FIXED
        if any(k in r.metrics for r in (runs if k == keys.test(keys.ACCURACY) else fair))
    ]
    robust = [(keys.robust_accuracy(t), f"robust accuracy at ε = {t} (%)") for _, t in radii(runs)]
    return (present + robust)[:MAX_METRICS]


def weight_figure(
    groups: Sequence[RunGroup], term: str, weights: dict[int, dict[str, float]], title: str, swept: Sequence[str]
) -> Drawn | None:
    """Each metric of interest against ``term``'s weight; None when nothing applies."""
    others = [k for k in swept if override_key(k) != weight_key(term)]
    rows = []
    for group in groups:
        line = label_of(group.key, others) if others else "runs"
        for run in group.runs:
            if term in weights[id(run)]:
                rows.append({"line": line, "weight": weights[id(run)][term], **run.metrics})
    frame = pd.DataFrame(rows)
    metrics = _metrics([r for g in groups for r in g.runs])
    if frame.empty or not metrics or frame["weight"].nunique() < 2:
        return None
    lines = list(dict.fromkeys(frame["line"]))
    fig, axes = new_figure(len(metrics), size=(4.3, 3.7))
    for ax, (key, ylabel) in zip(axes, metrics, strict=True):
        for index, line in enumerate(lines):
            color, label, alpha = series_style(index, len(lines), shorten(line))
            part = frame[frame["line"] == line]
            if key not in part.columns:
                continue
            stats = part.groupby("weight")[key].agg(["mean", "std", "count"]).dropna(subset=["mean"]).sort_index()
            mean, std = 100 * stats["mean"], 100 * stats["std"].fillna(0.0)
            ax.plot(stats.index, mean, marker="o", color=color, label=label)
            if alpha:
                ax.fill_between(stats.index, mean - std, mean + std, color=color, alpha=alpha, linewidth=0)
        positive = frame.loc[frame["weight"] > 0, "weight"]
        if len(positive) and positive.max() / positive.min() >= 30:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        scale = " (log scale; linear below the smallest weight > 0)" if ax.get_xscale() == "symlog" else ""
        finish_axes(ax, f"{term} weight λ{scale}", ylabel, series=len(lines))
    suptitle(fig, f"{title}: metrics against the {term} weight, mean over seeds ± std", swept)
    seeds = frame.groupby(["line", "weight"]).size()
    per_point = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    runs_word = "run" if seeds.max() == 1 else "runs"
    words = (
        f"{', '.join(label.split(' (')[0] for _, label in metrics).capitalize()} against the {term} term's weight "
        f"({per_point} {runs_word} per point, band ± one standard deviation)."
    )
    return fig, words
