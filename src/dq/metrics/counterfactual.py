"""Counterfactual flip rate: how often a prediction changes when only the sensitive
attribute of an input changes (tabular data whose sensitive one-hot is a model input)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dq.data_records import Split
from dq.inference import predict_logits


def counterfactual_flip_rate(
    model: nn.Module, split: Split, sensitive_columns: Sequence[int], device: torch.device, batch_size: int = 512
) -> float:
    """Fraction of examples whose predicted class changes when their sensitive one-hot
    (``sensitive_columns``, one column per group) is set to any other group."""
    columns = list(sensitive_columns)
    base = predict_logits(model, split, device, batch_size).argmax(dim=1)
    own_group = split.x[:, columns].argmax(dim=1)
    flipped = torch.zeros(len(split), dtype=torch.bool)
    for position, column in enumerate(columns):
        x = split.x.clone()
        x[:, columns] = 0
        x[:, column] = 1
        changed = predict_logits(model, Split(x=x, y=split.y), device, batch_size).argmax(dim=1) != base
        flipped |= changed & (own_group != position)
    return float(flipped.float().mean())
