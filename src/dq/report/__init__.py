"""Results people read: tables, plots, HTML reports and model cards, made from run
directories on disk (never from live objects), so a report can be made again at any time
from what a run or a sweep left behind.

- ``collect``: find runs under paths and read each one (``RunResult``).
- ``plots``: figures (PNG) for one run and for many.
- ``summary``: runs grouped (overrides minus the seed, or ``--by`` keys), mean ± std and n per metric.
- ``numbers``: the statistics and how a metric's numbers are printed.
- ``tables``: a summary as summary.csv, summary.md and summary.tex.
- ``build``: ``write_report``, the one "report these runs into a directory" (dq-report and a sweep's end).
- ``command``: the ``dq-report`` command line.
- ``sections``: what each page says (the run's report.html, its model card, a sweep's and a
  paper table's page) as a ``document`` (sections of paragraphs, tables, figures, caveats);
  ``breakdown``: flat metric keys read back as tables.
- Two writers format a document: ``html`` (with ``page``, a tiny builder of self-contained,
  escaped HTML pages) and ``model_card`` (Markdown: model_card.md).
- ``caveats``: the rules that derive a model card's caveats.
- ``degenerate``: the constant-predictor and divergence rules every report applies.
- ``run_report``: a run's report.html and model_card.md, written from its directory.
"""
