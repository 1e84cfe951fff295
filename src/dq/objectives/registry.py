"""The ``regularizer`` plugins: each module of this package that registers a name is one
choice of ``regularizer=[...]``, with its schema beside it.

Most regularizers are loss terms (``register_term``): ``builder(cfg, meta) -> Term``.
Some change the model instead of the loss (``register_transform``, e.g. LoRA):
``builder(cfg, meta) -> ModelTransform``. Both kinds share one registry, so
``regularizer=[...]`` and the error for an unknown name list them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dq.data_records import DatasetMeta
from dq.objectives.base import ModelTransform, Objective
from dq.registry import Registry

TERM = "term"
TRANSFORM = "transform"

REGULARIZERS: Registry[Callable[[Any, DatasetMeta], Any]] = Registry("regularizer", package="dq.objectives")


def register_term(name: str, *, schema: type) -> Callable[[Callable], Callable]:
    """Decorator: ``builder(cfg, meta) -> Term`` for ``regularizer.<name>``, whose config
    node is checked against ``schema`` (a dataclass with a ``weight``)."""
    return REGULARIZERS.register(name, schema=schema, kind=TERM)


def register_transform(name: str, *, schema: type) -> Callable[[Callable], Callable]:
    """Decorator: ``builder(cfg, meta) -> ModelTransform`` for ``regularizer.<name>``."""
    return REGULARIZERS.register(name, schema=schema, kind=TRANSFORM)


def build_objective(regularizers: Mapping[str, Any], meta: DatasetMeta) -> Objective:
    """The objective for the selected loss terms; weight-0 terms are left out entirely.

    ``regularizers`` maps each selected name to its validated config; a term is built
    knowing which other regularizers are selected (``needs``) through ``Objective``.
    """
    terms = []
    for name, cfg in regularizers.items():
        entry = REGULARIZERS.get(name)
        if entry.info["kind"] == TERM and cfg.weight != 0:
            terms.append(entry.value(cfg, meta))
    return Objective(terms)


def build_transforms(regularizers: Mapping[str, Any], meta: DatasetMeta) -> list[ModelTransform]:
    """The model transforms among the selected regularizers (LoRA), in selection order."""
    transforms = []
    for name, cfg in regularizers.items():
        entry = REGULARIZERS.get(name)
        if entry.info["kind"] == TRANSFORM:
            transforms.append(entry.value(cfg, meta))
    return transforms
