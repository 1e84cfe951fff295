"""One run's own report files: ``report.html`` and ``model_card.md`` in its directory.

The runner calls ``write_run_report`` when a run completes, and ``dq-report`` calls it for
each run it finds, so a run's page can be made again at any time from its directory.
"""

from __future__ import annotations

from pathlib import Path

from dq.report.collect import read_run
from dq.report.html import write_run_html
from dq.report.model_card import MODEL_CARD, write_model_card

REPORT_HTML = "report.html"
PLOTS = "plots"


def write_run_report(run_dir: Path, *, html: bool = True, model_card: bool = True) -> list[Path]:
    """Write ``<run_dir>/report.html`` (with the run's figures, drawn into ``<run_dir>/plots``)
    and, for a completed run, ``<run_dir>/model_card.md``. Returns the files written.

    A run that did not complete gets a page that says why, and no model card.
    """
    from dq.report.plots import run_figures

    run = read_run(Path(run_dir))
    written: list[Path] = []
    if html:
        figures = run_figures(run, run.run_dir / PLOTS) if run.ok else []
        written.append(write_run_html(run, figures, run.run_dir / REPORT_HTML))
    if model_card and run.ok:
        written.append(write_model_card(run, run.run_dir / MODEL_CARD))
    return written
