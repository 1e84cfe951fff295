"""The training objective: task loss plus weighted regularizer terms.

    L = L_task + Σ_k λ_k · term_k(model, batch, clean logits)

The engine knows only ``Objective``: it calls it on a batch and gets the total loss to
minimise, every term's value for logging, and the clean logits. A term with weight 0 is
dropped when the objective is built, so it costs no forward or backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from dq.data.types import Batch


class Term(Protocol):
    """One regularizer: a name, a weight and a scalar loss from (model, batch, clean logits)."""

    name: str
    weight: float

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor: ...


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    logits: torch.Tensor


class Objective:
    """Cross-entropy on the clean batch plus every active term, each logged on its own."""

    def __init__(self, terms: Sequence[Term] = ()) -> None:
        self.terms = [term for term in terms if term.weight != 0]

    def __call__(self, model: nn.Module, batch: Batch) -> ObjectiveOutput:
        logits = model(batch.x)
        task = F.cross_entropy(logits.float(), batch.y)
        values = {"task": task.detach()}
        total = task
        for term in self.terms:
            value = term(model, batch, logits)
            values[term.name] = value.detach()
            total = total + term.weight * value
        return ObjectiveOutput(loss=total, terms=values, logits=logits)

    @property
    def term_names(self) -> list[str]:
        return ["task", *(term.name for term in self.terms)]
