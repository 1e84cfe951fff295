"""Typed schemas of the run-wide config groups, one module per ``conf/`` group (trainer,
optimizer, scheduler, eval, explain, and the run itself), plus the checks they share.

A plugin's own schema (a dataset family's, a model's, a regularizer's) sits in the
plugin's module, next to the code that reads it; ``dq.spec`` brings them all together.
Importing this package loads nothing heavy: no torch, no Hydra.
"""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """The ``conf/`` tree: packaged as ``dq/conf`` in a wheel, at the top of a checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "conf"
    if packaged.is_dir():
        return packaged
    return here.parents[1] / "conf"
