"""Measures of a model's predictions that ``dq.evaluation.evaluate`` does not give and a
compressed model needs beside its original: accuracy per class (and of the worst class),
and Hooker et al.'s share of changed predictions.

Hooker et al. (2020, "What do compressed deep neural networks forget?",
https://arxiv.org/abs/1911.05248) found that compression hurts a few classes and groups
much more than top-line accuracy shows, and that the examples whose prediction changes
("pruning identified exemplars") concentrate there: ``pred_change`` counts them, overall,
per group and per true class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dq import metric_keys as keys
from dq.data_records import DatasetMeta, Split


def class_accuracy(logits: torch.Tensor, y: torch.Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """``test/class_accuracy/<class>`` for each class present in ``y`` and
    ``test/worst_class_accuracy``, the smallest of them."""
    pred, y = logits.argmax(dim=1).cpu(), y.cpu()
    out = {
        keys.class_accuracy(class_names[int(c)]): float((pred[y == c] == c).double().mean()) for c in torch.unique(y)
    }
    if out:
        out[keys.worst_accuracy(keys.CLASS)] = min(out.values())
    return out


def prediction_change(before: torch.Tensor, after: torch.Tensor, split: Split, meta: DatasetMeta) -> dict[str, float]:
    """Share of examples whose predicted class differs between ``before`` and ``after``
    (predicted classes [N]): ``pred_change`` overall, ``pred_change/group/<g>`` for each group
    present and ``pred_change/class/<c>`` for each true class present. The group shares,
    weighted by the groups' sizes, average to the overall share (so do the class shares)."""
    changed = (before.cpu() != after.cpu()).double()
    out = {"pred_change": float(changed.mean())}
    if split.group is not None and meta.has_groups:
        group = split.group.cpu()
        for g in torch.unique(group):
            out[f"pred_change/group/{keys.key_part(meta.group_names[int(g)])}"] = float(changed[group == g].mean())
    y = split.y.cpu()
    for c in torch.unique(y):
        out[f"pred_change/class/{keys.key_part(meta.class_names[int(c)])}"] = float(changed[y == c].mean())
    return out
