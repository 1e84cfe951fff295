"""Accuracy and robust accuracy per sensitive group (or per class, with
``dataset.group=label``), from ``test/group_accuracy/<g>`` and
``test/group_robust_accuracy/<g>@<eps>``.

For many runs: one panel for clean accuracy and one per attacked radius, the groups along
x and a bar per group of runs (mean over seeds, error bar ± std). For one run: clean and
robust bars per group; with many groups (classes) horizontal bars sorted from the least to
the most robust, with the overall accuracy marked, so the weakest class stands out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from dq import metric_keys as keys
from dq.report.collect import RunResult
from dq.report.plots.select import (
    RunGroup,
    group_names,
    groups_are_classes,
    mean_std,
    radii,
)
from dq.report.plots.style import (
    MAX_PANELS,
    MAX_TICK,
    Drawn,
    colors,
    crowded,
    figure_legend,
    finish_axes,
    new_figure,
    shorten,
    suptitle,
)

MANY = 6  # more groups than this: horizontal bars, sorted


def _panels(runs: Sequence[RunResult]) -> list[tuple[str, str | None]]:
    """(title, ε tag) per panel: clean, then each radius with per-group robust accuracy."""
    names = group_names(runs)
    tags = [
        t for _, t in radii(runs) if any(keys.group_robust_accuracy(n, t) in r.metrics for r in runs for n in names)
    ]
    return [("clean", None), *((f"PGD ε = {t}", t) for t in tags[: MAX_PANELS - 1])]


def _key(name: str, tag: str | None) -> str:
    return keys.group_accuracy(name) if tag is None else keys.group_robust_accuracy(name, tag)


def _ticks(ax: Axes, names: Sequence[str]) -> None:
    ax.set_xticks(range(len(names)))
    rotate = len(names) > 4 or max(len(n) for n in names) > 8
    ax.set_xticklabels(
        [shorten(n, MAX_TICK) for n in names], rotation=40 if rotate else 0, ha="right" if rotate else "center"
    )


def groups_figure(groups: Sequence[RunGroup], title: str, swept: Sequence[str]) -> Drawn | None:
    """Grouped bars of per-group accuracy (%), one bar per group of runs; None without
    groups, or with too many run groups for bars to be read (each run's own figure shows them)."""
    runs = [r for g in groups for r in g.runs]
    names = group_names(runs)
    shown = [g for g in groups if group_names(g.runs)]
    if not names or not shown or crowded(len(shown)):
        return None
    panels = _panels(runs)
    noun = "class" if all(groups_are_classes(r) for r in runs) else "group"
    width_each = min(max(5.0, 0.35 * len(names) * len(shown) + 1.5), 12.0)
    fig, axes = new_figure(len(panels), size=(width_each, 3.6), stacked=width_each > 7.0)
    palette = colors(len(groups))
    width = 0.8 / len(shown)
    for ax, (panel, tag) in zip(axes, panels, strict=True):
        for slot, group in enumerate(shown):
            stats = [mean_std(group.values(_key(n, tag))) for n in names]
            mean = 100 * np.array([m for m, _ in stats])
            std = 100 * np.array([s if len(group.runs) > 1 else np.nan for _, s in stats])  # no bar for n=1
            x = np.arange(len(names)) + (slot - (len(shown) - 1) / 2) * width
            color = palette[groups.index(group)]
            ax.bar(
                x, mean, width, yerr=std, capsize=2, color=color, label=f"{shorten(group.label)} (n={len(group.runs)})"
            )
        _ticks(ax, names)
        ax.set_ylim(0, 105)
        finish_axes(ax, noun, f"{'accuracy' if tag is None else 'robust accuracy'} (%)", panel)
    figure_legend(fig, axes[0], len(shown))
    attacked = ", clean and under attack" if len(panels) > 1 else ""
    suptitle(fig, f"{title}: accuracy per {noun}{attacked}", swept)
    robust = " and under PGD at ε = " + ", ".join(t for _, t in panels if t) if len(panels) > 1 else ""
    words = (
        f"Test accuracy per {noun} ({', '.join(names[:4])}{', …' if len(names) > 4 else ''}) clean{robust}, "
        "one bar per group of runs (mean over seeds, error bar ± one standard deviation)."
    )
    return fig, words


def run_groups_figure(run: RunResult, title: str) -> Drawn | None:
    """One run's per-group clean and robust accuracy (%); None when it has no groups."""
    names = group_names([run])
    if not names:
        return None
    panels = _panels([run])
    noun = "class" if groups_are_classes(run) else "group"
    tags = [t for _, t in panels]
    series = [("clean", None)] + [(f"PGD ε = {t}", t) for t in tags if t is not None]
    values = {tag: np.array([100 * float(run.metrics.get(_key(n, tag), np.nan)) for n in names]) for _, tag in series}
    palette = colors(len(series))
    if len(names) > MANY:
        weakest = series[-1][1]  # sort by the largest radius (clean when not attacked), least first
        order = np.argsort(values[weakest], kind="stable")[::-1]  # barh draws bottom-up: least on top
        fig, (ax,) = new_figure(size=(6.8, 0.32 * len(names) * len(series) ** 0.5 + 1.8))
        height = 0.8 / len(series)
        for slot, (label, tag) in enumerate(series):
            y = np.arange(len(names)) + (slot - (len(series) - 1) / 2) * height
            bars = ax.barh(y, values[tag][order], height, color=palette[slot], label=label)
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
            overall = run.metrics.get(keys.test(keys.ACCURACY) if tag is None else keys.robust_accuracy(tag))
            if isinstance(overall, int | float):
                ax.axvline(100 * overall, color=palette[slot], linestyle="--", linewidth=1)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([shorten(names[i], MAX_TICK) for i in order])
        ax.set_xlim(0, 108)
        finish_axes(ax, "test accuracy (%) (dashed: over all examples)", noun, series=len(series))
        words = (
            f"Test accuracy of each of {len(names)} {noun}{'es' if noun == 'class' else 's'}, clean"
            f"{' and under PGD at ε = ' + ', '.join(t for t in tags if t) if len(series) > 1 else ''}, sorted by "
            f"{'robust' if weakest else 'clean'} accuracy with the least accurate on top; dashed lines mark the overall accuracy."
        )
    else:
        fig, (ax,) = new_figure(size=(max(5.0, 0.6 * len(names) * len(series) + 1.5), 4.2))
        width = 0.8 / len(series)
        for slot, (label, tag) in enumerate(series):
            x = np.arange(len(names)) + (slot - (len(series) - 1) / 2) * width
            ax.bar(x, values[tag], width, color=palette[slot], label=label)
        _ticks(ax, names)
        ax.set_ylim(0, 105)
        finish_axes(ax, noun, "test accuracy (%)")
        figure_legend(fig, ax, len(series))
        words = (
            f"Test accuracy of each {noun} ({', '.join(names)}), clean"
            f"{' and under PGD at ε = ' + ', '.join(t for t in tags if t) if len(series) > 1 else ''}."
        )
    suptitle(fig, f"{title}: accuracy per {noun}")
    return fig, words
