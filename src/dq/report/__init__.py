"""Results people read: tables, plots, HTML reports and model cards, made from run
directories on disk (never from live objects), so a report can be made again at any time
from what a run or a sweep left behind.

- ``collect``: find runs under paths and read each one (``RunResult``).
- ``plots``: figures (PNG) for one run and for many.
"""
