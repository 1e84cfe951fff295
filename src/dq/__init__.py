"""dq: train a classifier while making it fairer, more robust, cheaper to adapt and
better explained, and measure it.

From Python::

    import dq
    cfg = dq.compose(["dataset=adult", "model=mlp"])   # conf/ + overrides, as dq-train would
    metrics = dq.train(cfg)
    run = dq.load_run("outputs/default/2026-11-22_09-00-00.000000")
    run.model, run.splits.test, run.metrics

``import dq`` is light: ``compose``, ``train``, ``load_run`` and ``LoadedRun`` are imported on first
use (a module ``__getattr__``), so torch and the rest load only when a run needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dq.rundir.load import LoadedRun, load_run
    from dq.runner import train
    from dq.spec import compose

__all__ = ["LoadedRun", "compose", "load_run", "train"]
__version__ = "0.1.0"

_LAZY = {"compose": "dq.spec", "train": "dq.runner", "load_run": "dq.rundir.load", "LoadedRun": "dq.rundir.load"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'dq' has no attribute {name!r}")
