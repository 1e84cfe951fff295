"""Make the report of a set of runs in one directory: the one function that both
``dq-report`` and a sweep's end call, so the two always write the same files.

    <out_dir>/summary.csv  summary.md  summary.tex   mean ± std per group (dq.report.tables)
    <out_dir>/plots/*.png                             dq.report.plots.runs_figures
    <out_dir>/report.html                             dq.report.html.write_sweep_html

When ``out_dir`` is itself the one run reported (``dq-report <run dir>``), its
report.html stays the run's own page (dq.report.run_report), made again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dq.report.collect import RunResult
from dq.report.html import write_sweep_html
from dq.report.plots import Figure, runs_figures
from dq.report.run_report import REPORT_HTML, write_run_report
from dq.report.summary import Summary, summarize
from dq.report.tables import summary_csv, summary_latex, summary_markdown
from dq.rundir.write import write_text

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SUMMARY_TEX = "summary.tex"
PLOTS_DIR = "plots"


@dataclass
class Report:
    """What ``write_report`` wrote: the summary it computed, its files, its figures."""

    summary: Summary
    title: str
    files: list[Path]
    figures: list[Figure]


def default_title(summary: Summary) -> str:
    """What was swept, e.g. ``regularizer.fairness.weight swept (2 groups, 4 runs)``."""
    counts = f"{len(summary.groups)} groups, {summary.n_runs} runs"
    if summary.keys:
        return f"{' × '.join(summary.keys)} swept ({counts})"
    return f"Runs ({counts})"


def write_report(
    runs: Sequence[RunResult],
    out_dir: Path,
    title: str | None = None,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
) -> Report:
    """Summarise ``runs`` (see ``dq.report.summary.summarize``) and write summary.csv,
    summary.md, summary.tex, the comparison plots and report.html into ``out_dir``.

    Every check (metric patterns, ``by`` keys) happens before the first file is written,
    so bad input leaves no half-written report. Runs that did not complete are listed in
    summary.md, not plotted.

    Raises:
        DQUserError: a metric pattern that matches nothing, or a ``by`` key no run has.
    """
    out_dir = Path(out_dir)
    summary = summarize(runs, metrics=metrics, by=by)
    title = title or default_title(summary)
    texts = {
        SUMMARY_CSV: summary_csv(summary),
        SUMMARY_MD: summary_markdown(summary, title, base=out_dir),
        SUMMARY_TEX: summary_latex(summary, title),
    }
    files = []
    for name, text in texts.items():
        write_text(out_dir / name, text)
        files.append(out_dir / name)
    if len(runs) == 1 and runs[0].run_dir.resolve() == out_dir.resolve():
        files += write_run_report(out_dir)
        return Report(summary, title, files, [])
    figures = runs_figures([run for run in runs if run.ok], out_dir / PLOTS_DIR, title)
    files.append(write_sweep_html(title, summary.frame(), figures, summary.problems, out_dir / REPORT_HTML))
    return Report(summary, title, files, figures)
