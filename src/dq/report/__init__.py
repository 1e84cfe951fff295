"""Results people read: tables, plots, HTML reports and model cards, made from run
directories on disk (never from live objects), so a report can be made again at any time
from what a run or a sweep left behind.

- ``collect``: find runs under paths and read each one (``RunResult``).
- ``plots``: figures (PNG) for one run and for many.
- ``page``: a tiny builder of self-contained, escaped HTML pages; ``html``: the run, sweep
  and paper-table pages built with it; ``breakdown``: flat metric keys read back as tables.
- ``model_card`` and ``caveats``: model_card.md and the rules that derive its caveats.
- ``run_report``: a run's report.html and model_card.md, written from its directory.
"""
