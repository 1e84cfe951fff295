"""The ``logger`` plugins: each module of this package that registers a name is one choice
of ``logger=[...]``, with its schema beside it.

A builder is ``builder(cfg, context) -> Logger | None``. It runs before training starts and
checks what can be checked then (the package is installed, the tracking store opens), so
a bad choice stops the run with one line before anything is trained; it opens nothing in
the run directory (that is ``Logger.start``). ``None`` means "nothing to add" (``jsonl``:
the training loop writes metrics.jsonl itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dq.registry import Registry

LOGGERS: Registry[Callable[..., Any]] = Registry("logger", package="dq.loggers")

INSTALL_HINT = "pip install 'dq[loggers]'"


def register_logger(name: str, *, schema: type) -> Callable[[Callable], Callable]:
    """Decorator: ``builder(cfg, context) -> Logger | None`` for ``logger.<name>``, whose
    config node is checked against ``schema``."""
    return LOGGERS.register(name, schema=schema)
