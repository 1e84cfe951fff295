"""Differentiable fairness penalty on a batch's group gap (in the spirit of DiffDP and
DiffEodd in Han et al.'s fairness benchmark).

- ``dp`` (demographic parity): the gap, largest minus smallest group mean, of the predicted
  probability of the positive class (class 1). For K > 2 classes, the mean over classes of
  each class's gap, so every class's rate is pushed towards parity.
- ``eo`` (equalized odds): the same gap computed within each true label and summed over
  labels (binary: the TPR gap plus the FPR gap, in probabilities).

Groups absent from a batch are skipped; a batch with fewer than two groups adds 0.
Reported metrics stay fairlearn's (dq.metrics.fairness); this is the smooth surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from dq.config.validation import require
from dq.data_records import Batch, DatasetMeta
from dq.objectives.base import Term, require_groups
from dq.objectives.registry import register_term


class FairnessCriterion(StrEnum):
    dp = "dp"
    eo = "eo"


@dataclass
class FairnessConfig:
    """``regularizer.fairness`` (conf/regularizer/fairness.yaml): weight and criterion."""

    weight: float = 1.0
    criterion: FairnessCriterion = FairnessCriterion.dp

    def validate(self) -> None:
        require(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")


def group_gap(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Per column of ``values`` [N, C]: max − min over present groups of the group mean; mean over columns."""
    sums = values.new_zeros(num_groups, values.shape[1]).index_add(0, group, values)
    counts = torch.bincount(group, minlength=num_groups)
    present = counts > 0
    if int(present.sum()) < 2:
        return values.new_zeros(())
    means = sums[present] / counts[present].unsqueeze(1).to(values.dtype)
    return (means.max(dim=0).values - means.min(dim=0).values).mean()


class FairnessPenalty(Term):
    """``weight · gap``; see the module docstring for what ``criterion`` measures."""

    name = "fairness"

    def __init__(self, weight: float, criterion: FairnessCriterion, num_classes: int, num_groups: int) -> None:
        self.weight = weight
        self.criterion = criterion
        self.num_groups = num_groups
        self.classes = [1] if num_classes == 2 else list(range(num_classes))
        self.num_classes = num_classes

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), dim=1)[:, self.classes]
        if self.criterion == FairnessCriterion.dp:
            return group_gap(probs, batch.group, self.num_groups)
        total = probs.new_zeros(())
        for label in range(self.num_classes):
            rows = batch.y == label
            if rows.any():
                total = total + group_gap(probs[rows], batch.group[rows], self.num_groups)
        return total


@register_term("fairness", schema=FairnessConfig)
def build_fairness(cfg: FairnessConfig, meta: DatasetMeta) -> FairnessPenalty:
    require_groups("fairness", meta)
    return FairnessPenalty(cfg.weight, cfg.criterion, meta.num_classes, len(meta.group_names))
