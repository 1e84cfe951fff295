"""Figures (PNG, matplotlib) from run directories: for one run, and for a set of runs.

Every figure has labelled axes with units, a legend where there is more than one line or
bar series, and a title that says what was plotted or swept. The functions return what
they wrote as ``Figure`` records, so the HTML report can embed them with their captions.
Only figures that apply are made: a run without groups gets no group bars, runs never
attacked get no robustness plot.

One module per kind builds a matplotlib figure and its caption (``curves``, ``pareto``,
``robustness``, ``groups``, ``weights``); this module names the files and writes them.
matplotlib and pandas load on the first figure drawn, not on import (``dq-report --help``
stays quick).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.report.collect import RunResult

if TYPE_CHECKING:
    from dq.report.plots.style import Drawn

__all__ = ["Figure", "non_dominated", "run_figures", "runs_figures"]


@dataclass(frozen=True)
class Figure:
    """A PNG written to ``path``, and a one-sentence caption saying what it shows."""

    path: Path
    caption: str


def __getattr__(name: str) -> Any:
    if name == "non_dominated":  # the Pareto function, without loading matplotlib first
        from dq.report.plots.pareto import non_dominated

        return non_dominated
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _write(built: Sequence[tuple[str, Drawn | None]], out_dir: Path) -> list[Figure]:
    from dq.report.plots.style import save

    written = []
    for name, drawn in built:
        if drawn is None:
            continue
        if not written:
            out_dir.mkdir(parents=True, exist_ok=True)
        fig, caption = drawn
        written.append(Figure(save(fig, out_dir / f"{name}.png"), caption))
    return written


def run_title(run: RunResult) -> str:
    """``<experiment> (<run dir name>)``: what a single run's figures are of."""
    experiment = run.override_values().get("experiment") or run.config().get("experiment_name") or "run"
    return experiment if experiment == run.run_dir.name else f"{experiment} ({run.run_dir.name})"


def run_figures(run: RunResult, out_dir: Path) -> list[Figure]:
    """Figures for one completed run, written into ``out_dir`` (normally ``<run>/plots``):
    its training curves, per-group accuracy (and robust accuracy) bars where it has groups,
    robust accuracy against ε where it was attacked at several radii. Returns only the
    figures that apply to this run (none for a run that did not complete)."""
    if not run.ok:
        return []
    from dq.report.plots.curves import run_curves_figure
    from dq.report.plots.groups import run_groups_figure
    from dq.report.plots.robustness import run_robustness_figure

    title = run_title(run)
    return _write(
        [
            ("curves", run_curves_figure(run, title)),
            ("group_accuracy", run_groups_figure(run, title)),
            ("robust_accuracy_vs_eps", run_robustness_figure(run, title)),
        ],
        Path(out_dir),
    )


def runs_figures(runs: Sequence[RunResult], out_dir: Path, title: str) -> list[Figure]:
    """Figures comparing many runs (a sweep, or whatever ``dq-report`` found), written into
    ``out_dir``: accuracy against fairness gap with the Pareto front marked, robust accuracy
    against ε, training curves overlaid (one line per group of runs), per-group accuracy
    and robust accuracy bars, and each swept regularizer weight against its metrics with
    ± std bands over seeds. ``title`` says what was swept. Returns the figures that apply;
    failed and broken runs are left out."""
    from dq.report.plots.curves import curves_figure
    from dq.report.plots.groups import groups_figure
    from dq.report.plots.pareto import pareto_figure
    from dq.report.plots.robustness import robustness_figure
    from dq.report.plots.select import run_groups
    from dq.report.plots.weights import swept_terms, weight_figure

    groups, swept = run_groups(runs)
    if not groups:
        return []
    terms, weights = swept_terms(groups)
    built: list[tuple[str, Drawn | None]] = [
        ("pareto_accuracy_dp", pareto_figure(groups, "dp", title, swept)),
        ("pareto_accuracy_eo", pareto_figure(groups, "eo", title, swept)),
        ("robust_accuracy_vs_eps", robustness_figure(groups, title, swept)),
        ("curves", curves_figure(groups, title, swept)),
        ("group_accuracy", groups_figure(groups, title, swept)),
        *((f"weight_{term}", weight_figure(groups, term, weights, title, swept)) for term in terms),
    ]
    return _write(built, Path(out_dir))
