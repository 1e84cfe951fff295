"""Robust accuracy against the attack radius ε (clean accuracy at ε = 0), from the
``test/robust_accuracy@<eps>`` metrics: one line per group of runs with a ± std band over
seeds, or for one run, its overall line and one thin line per sensitive group or class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
    Drawn,
    colors,
    eps_label,
    finish_axes,
    marker,
    new_figure,
    percent,
    series_style,
    shorten,
    suptitle,
)

MAX_GROUP_LINES = 12  # a single run's per-group lines, beyond which they are not drawn


def _curve(runs: Sequence[RunResult], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    stats = [mean_std(np.array([float(r.metrics[k]) for r in runs if k in r.metrics])) for k in names]
    return percent(np.array([m for m, _ in stats])), percent(np.array([s for _, s in stats]))


def robustness_figure(groups: Sequence[RunGroup], title: str, swept: Sequence[str]) -> Drawn | None:
    """One line per run group: accuracy (%) at ε = 0 and each attacked radius, mean ± std
    over its runs. None when no run was attacked."""
    attacked = [index for index, group in enumerate(groups) if radii(group.runs)]
    found = radii(run for group in groups for run in group.runs)
    if not found:
        return None
    fig, (ax,) = new_figure(size=(6.2, 4.4))
    for index, group in enumerate(groups):
        if index not in attacked:
            continue
        tags = [t for _, t in found if keys.robust_accuracy(t) in group.runs[0].metrics]
        eps = [0.0, *(e for e, t in found if t in tags)]
        mean, std = _curve(group.runs, [keys.test(keys.ACCURACY), *map(keys.robust_accuracy, tags)])
        color, label, alpha = series_style(index, len(groups), f"{shorten(group.label)} (n={len(group.runs)})")
        ax.plot(eps, mean, marker=marker(index), color=color, label=label)
        if alpha:
            ax.fill_between(eps, mean - std, mean + std, color=color, alpha=alpha, linewidth=0)
    config = groups[attacked[0]].runs[0].config()
    series = len(attacked)
    finish_axes(ax, eps_label(config), "test accuracy under PGD (%)", series=series)
    suptitle(fig, f"{title}: robust accuracy against ε (ε = 0: clean)", swept)
    words = (
        f"Test accuracy under PGD attack at ε = {', '.join(t for _, t in found)} (ε = 0: clean accuracy), "
        "one line per group of runs, the band ± one standard deviation over seeds."
    )
    return fig, words


def run_robustness_figure(run: RunResult, title: str) -> Drawn | None:
    """One run's accuracy (%) against ε, overall and per group; None with fewer than two radii."""
    found = radii([run])
    if len(found) < 2:
        return None
    eps = [0.0, *(e for e, _ in found)]
    fig, (ax,) = new_figure(size=(6.2, 4.4))
    mean, _ = _curve([run], [keys.test(keys.ACCURACY), *(keys.robust_accuracy(t) for _, t in found)])
    ax.plot(eps, mean, marker="o", color="black", linewidth=2.2, label="all test examples", zorder=3)
    names = group_names([run])
    drawn = 1
    if names and len(names) <= MAX_GROUP_LINES:
        palette = colors(len(names))
        for index, name in enumerate(names):
            line = [keys.group_accuracy(name), *(keys.group_robust_accuracy(name, t) for _, t in found)]
            if all(k in run.metrics for k in line):
                values, _ = _curve([run], line)
                ax.plot(eps, values, marker=".", linewidth=1, color=palette[index], label=shorten(name, 20))
                drawn += 1
    finish_axes(ax, eps_label(run.config()), "test accuracy under PGD (%)", series=drawn)
    ax.set_ylim(0, 102)
    suptitle(fig, f"{title}: robust accuracy against ε (ε = 0: clean)")
    per_group = f" and per {'class' if groups_are_classes(run) else 'group'}" if drawn > 1 else ""
    words = f"This run's test accuracy under PGD attack at each ε (ε = 0: clean accuracy), overall{per_group}."
    return fig, words
