"""Objective terms (one module per regularizer) and ``build_objective``.

Each term module registers a builder with ``@register_term(name)``; ``build_objective``
turns the run's ``regularizer`` configs into an ``Objective``. ``lora`` is not a loss term
(its cost is the trainable parameter count): it changes the model (dq.models.lora).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from dq.data.types import DatasetMeta
from dq.objectives.base import Objective, ObjectiveOutput, Term
from dq.objectives.registry import register_term, term_builder

__all__ = ["Objective", "ObjectiveOutput", "Term", "build_objective", "register_term"]

# Imported for their @register_term side effect.
for _module in ("fairness", "attribution", "adversarial"):
    importlib.import_module(f"dq.objectives.{_module}")


# Regularizers that change the model rather than add a loss term.
MODEL_REGULARIZERS = frozenset({"lora"})


def build_objective(regularizers: Mapping[str, Any], meta: DatasetMeta) -> Objective:
    """The objective for the selected regularizers; weight-0 terms are left out entirely."""
    terms = []
    for name, cfg in regularizers.items():
        if name in MODEL_REGULARIZERS:
            continue
        builder = term_builder(name)
        if builder is None:
            raise ValueError(f"regularizer {name!r} has no objective term registered")
        if cfg.weight != 0:
            terms.append(builder(cfg, meta))
    return Objective(terms)
