"""Which objective term a ``regularizer.<name>`` config builds, filled by a decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dq.data.types import DatasetMeta
from dq.objectives.base import Term

TermBuilder = Callable[[Any, DatasetMeta], Term]
_TERMS: dict[str, TermBuilder] = {}


def register_term(name: str) -> Callable[[TermBuilder], TermBuilder]:
    """Decorator: ``builder(cfg, meta) -> Term`` for ``regularizer.<name>``."""

    def decorate(builder: TermBuilder) -> TermBuilder:
        if name in _TERMS:
            raise ValueError(f"objective term {name!r} is registered twice")
        _TERMS[name] = builder
        return builder

    return decorate


def term_builder(name: str) -> TermBuilder | None:
    """The builder for ``name``; None for regularizers that are not loss terms (lora)."""
    return _TERMS.get(name)
