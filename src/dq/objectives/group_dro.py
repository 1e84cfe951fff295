"""Group DRO: the loss of the worst group, weighted online (``regularizer=[group_dro]``).

Sagawa, Koh, Hashimoto & Liang 2020, "Distributionally Robust Neural Networks for Group
Shifts: On the Importance of Regularization for Worst-Case Generalization", ICLR 2020
[https://arxiv.org/abs/1911.08731], Algorithm 1, as the authors' code does it for a batch
(kohpangwei/group_DRO, ``LossComputer.compute_robust_loss``). The groups are the
(class, sensitive group) pairs, g = y·G + a, as the paper's groups are (label, attribute)
pairs. The term keeps a distribution q over the groups and, on each training batch, with
ℓ_g the mean cross-entropy of group g's examples in the batch (0 for a group absent from
it) and n_g the group's size in the training split:

    q_g ← q_g · exp(η · (ℓ_g + C / √n_g)),   then q ← q / Σ_g q_g,
    value = Σ_g q_g · ℓ_g          (with the updated q; q carries no gradient).

C is ``adjustment`` (default 0: no adjustment), the paper's group adjustment: a small
group's training loss underestimates its test loss more than a large group's (it is
easier to fit), so the adjustment, decreasing in n_g, moves weight towards the small
groups; the paper tunes C on validation data. The adjustment enters the update only: it
is a constant, so the value's gradient is the same with or without it (the authors' code
adds it to ℓ_g in place, so their logged loss includes it; ours does not).

n_g comes from ``meta.train_group_counts``, which ``dq.data.build`` counts on the training
split (after ``dataset.limit``) for every dataset with groups: the dataset's metadata, not
the term, is the one home of the split's sizes. Where the counts are known, q starts
uniform over the pairs the training split holds and at 0 on the others (with
``dataset.group=label`` or ``colored_mnist``, whose groups already fix the class, most
pairs are empty: a weight there would shrink the loss until the exponentiated steps
wore it away); with every pair present, as on Adult, that is the uniform start.

The value enters the objective as the share ``weight`` of the clean cross-entropy it
replaces (``task_share``): weight 1 is the paper's objective, weight w mixes
``(1 − w)·CE + w·Σ_g q_g·ℓ_g``. q persists across batches and epochs: it is the term's
state (``state_dict``), saved in last.pt, also between two batches, so a resumed run goes
on with the same q. After each epoch q is logged as ``group_dro/q/<class>/<group>``.

A batch whose losses are not finite (``trainer.nonfinite=skip_batch``) leaves q as it
was. On several processes each rank steps q on its own shard during an epoch, and rank
0's q is every rank's after it (dq.engine.ranks hands the objective's state over); n_g
is the whole training split's on every rank.

Example::

    >>> term = GroupDRO(GroupDROConfig(step_size=0.01, adjustment=1.0), meta)  # q uniform over the pairs trained on
    >>> value = term(model, batch, model(batch.x))             # q stepped on this batch
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dq.config.validation import require
from dq.data_records import Batch, DatasetMeta, Split
from dq.errors import DQUserError
from dq.objectives.base import Term, require_groups
from dq.objectives.registry import register_term


@dataclass
class GroupDROConfig:
    """``regularizer.group_dro`` (conf/regularizer/group_dro.yaml): ``weight`` in [0, 1], the
    share of the clean cross-entropy the group-weighted loss replaces (1: the paper's
    objective); ``step_size`` η > 0 of the exponentiated-gradient step on q; ``adjustment``
    C ≥ 0 of the group adjustment C/√n_g (0: none)."""

    weight: float = 1.0
    step_size: float = 0.01
    adjustment: float = 0.0

    def validate(self) -> None:
        require(
            0.0 <= self.weight <= 1.0,
            "weight",
            f"must be in [0, 1] (the share of the cross-entropy the group-weighted loss replaces), got {self.weight}",
        )
        require(self.step_size > 0, "step_size", f"must be > 0, got {self.step_size}")
        require(self.adjustment >= 0, "adjustment", f"must be >= 0 (C of C/sqrt(n_g)), got {self.adjustment}")


def group_losses(losses: torch.Tensor, ids: torch.Tensor, groups: int) -> torch.Tensor:
    """ℓ_g [groups]: the mean of ``losses`` [N] over the examples of each group id in ``ids``
    [N]; 0 for a group with no example."""
    sums = losses.new_zeros(groups).index_add(0, ids, losses)
    counts = torch.bincount(ids, minlength=groups).to(losses.dtype)
    return sums / counts.clamp_min(1.0)


def step_weights(q: torch.Tensor, losses: torch.Tensor, step_size: float) -> torch.Tensor:
    """One exponentiated-gradient step: q_g·exp(η·ℓ_g), normalised to sum 1; ``q`` itself
    when the step is not finite (a batch with a NaN or infinite loss)."""
    stepped = q * torch.exp(step_size * losses.detach())
    stepped = stepped / stepped.sum()
    return torch.where(torch.isfinite(stepped).all(), stepped, q)


class GroupDRO(Term):
    r"""Group DRO's online group weights on the clean cross-entropy; see the module docstring.

    Arguments:
        cfg (GroupDROConfig): ``weight`` (its ``task_share`` too), ``step_size`` η and
            ``adjustment`` C.
        meta (DatasetMeta): the class and group names (q's size K·G and its metric keys)
            and ``train_group_counts`` (n_g: q's start and the adjustment; needed when C > 0).

    Shape:
        - batch.y: [N] labels; batch.group: [N] sensitive group ids.
        - logits: [N, K] clean logits.
        - output: scalar, Σ_g q_g·ℓ_g.
    """

    name = "group_dro"

    def __init__(self, cfg: GroupDROConfig, meta: DatasetMeta) -> None:
        self.weight = float(cfg.weight)
        self.task_share = self.weight
        self.step_size = float(cfg.step_size)
        self.num_groups = len(meta.group_names)
        self.keys = [  # group id y·G + a, names made safe as dq.metrics' key_part does
            f"{self.name}/q/{c.replace('/', '-')}/{g.replace('/', '-')}"
            for c in meta.class_names
            for g in meta.group_names
        ]
        counts = torch.tensor(meta.train_group_counts, dtype=torch.float32).reshape(-1)
        trained = counts > 0 if counts.numel() else torch.ones(len(self.keys), dtype=torch.bool)
        self.q = trained.float() / trained.sum()
        # C/√n_g on the pairs trained on; 0 on the empty ones, whose q is 0 and stays 0
        self.adjustment = (
            torch.where(trained, cfg.adjustment / counts.clamp_min(1).sqrt(), 0.0) if cfg.adjustment else None
        )

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits.float(), batch.y, reduction="none")
        ids = batch.y * self.num_groups + batch.group
        per_group = group_losses(losses, ids, self.q.numel())
        update = per_group if self.adjustment is None else per_group + self.adjustment.to(per_group.device)
        self.q = step_weights(self.q.to(per_group.device), update, self.step_size)
        return per_group @ self.q

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """q after the epoch's last batch, one value per (class, group)."""
        return dict(zip(self.keys, self.q.tolist(), strict=True))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """q, which carries over from batch to batch (saved in last.pt)."""
        return {"q": self.q.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.q = state["q"].to(dtype=torch.float32).clone()


@register_term("group_dro", schema=GroupDROConfig)
def build_group_dro(cfg: GroupDROConfig, meta: DatasetMeta) -> GroupDRO:
    require_groups("group_dro", meta)
    if cfg.adjustment and not meta.train_group_counts:
        raise DQUserError(
            f"regularizer.group_dro.adjustment={cfg.adjustment:g} needs the training split's group sizes "
            f"(meta.train_group_counts, counted by dq.data.build), which dataset {meta.name} lacks; use adjustment=0"
        )
    return GroupDRO(cfg, meta)
