"""dq: train a classifier while making it fairer, more robust, cheaper to adapt and
better explained, and measure it.

From Python::

    import dq
    metrics = dq.train(cfg)          # cfg from hydra.compose(...)
    run = dq.load_run("outputs/default/2026-11-22_09-00-00.000000")
    run.model, run.splits.test, run.metrics
"""

from dq.config import register as _register_schemas
from dq.runner import train
from dq.runs import LoadedRun, load_run

_register_schemas()

__all__ = ["LoadedRun", "load_run", "train"]
__version__ = "0.1.0"
