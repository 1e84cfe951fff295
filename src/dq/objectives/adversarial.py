"""Adversarial training: the ``adversarial`` term (``regularizer=[adversarial]``).

- ``method=pgd`` (Madry et al. 2018, https://arxiv.org/abs/1706.06083): the term is the
  cross-entropy on PGD examples that maximise the cross-entropy inside the ε-ball. It
  declares ``task_share = weight``, so the objective is
  ``(1 − w)·CE(clean) + w·CE(adversarial)`` (w = 1: pure adversarial training).
- ``method=trades`` (Zhang et al. 2019, https://arxiv.org/abs/1901.08573): the term is
  ``KL(p_clean ‖ p_adv)`` with ``x_adv`` maximising that KL, started from
  ``x + 0.001·N(0, 1)``; the objective is ``CE(clean) + β·KL`` with β = ``weight``.

The attack (dq.attacks.pgd) runs with the model in eval mode; the loss on the adversarial
batch is then computed in the model's training mode, as in both papers' code. Inputs are
clipped to the dataset's valid range (images: [0, 1]). Tabular data: only the standardised
continuous columns (``meta.continuous_columns``) move, one-hot columns stay as they are,
and nothing is clipped. Series: every value moves, no clipping.

Text is refused when the objective is built: token ids are discrete, so a gradient step on
them means nothing; attacking the embedding layer instead is future work.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import nn

from dq.attacks import Start, attack_bounds, check_attackable, eval_mode, feature_mask, pgd
from dq.attacks.pgd import LossFn
from dq.config.attack import AttackConfig
from dq.config.validation import require
from dq.objectives.registry import register_term
from dq.records import Batch, DatasetMeta


class AdversarialMethod(StrEnum):
    pgd = "pgd"
    trades = "trades"


@dataclass
class AdversarialConfig(AttackConfig):
    """``regularizer.adversarial``: the attack (shared with ``eval.robust``) plus how its
    loss enters the objective. ``method=pgd`` (Madry): loss = (1 − weight)·CE(clean) +
    weight·CE(adversarial). ``method=trades``: CE(clean) + weight·KL(clean ‖ adversarial),
    weight being TRADES' β."""

    weight: float = 1.0
    method: AdversarialMethod = AdversarialMethod.pgd

    def validate(self) -> None:
        super().validate()
        require(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        require(
            self.method != AdversarialMethod.pgd or self.weight <= 1,
            "weight",
            f"mixes clean and adversarial loss for method=pgd: must be in [0, 1], got {self.weight}",
        )


class AdversarialTerm:
    """CE(x_adv) for ``pgd`` (with ``task_share = weight``); KL(p_clean ‖ p_adv) for ``trades``.

    Args:
        cfg: the attack (norm, eps, alpha, steps, random_start), weight and method.
        bounds: valid input range to clip to, or None.
        mask: [1, *input_shape] of 0/1, the inputs the attack may move, or None (all).
    """

    name = "adversarial"

    def __init__(
        self, cfg: AdversarialConfig, bounds: tuple[float, float] | None, mask: torch.Tensor | None = None
    ) -> None:
        self.weight = float(cfg.weight)
        self.method = AdversarialMethod(cfg.method)
        self.task_share = self.weight if self.method == AdversarialMethod.pgd else 0.0
        self.norm = str(cfg.norm)
        self.eps = float(cfg.eps)
        self.step_size = float(cfg.step_size)
        self.steps = int(cfg.steps)
        self.random_start = bool(cfg.random_start)
        self.bounds = bounds
        self._masks = {} if mask is None else {mask.device: mask}

    def _mask(self, device: torch.device) -> torch.Tensor | None:
        """The feature mask on ``device`` (copied there once)."""
        if not self._masks:
            return None
        if device not in self._masks:
            self._masks[device] = next(iter(self._masks.values())).to(device)
        return self._masks[device]

    def attack(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The adversarial inputs for ``batch`` (detached)."""
        x, y = batch.x, batch.y
        if self.method == AdversarialMethod.pgd:
            start = Start.uniform if self.random_start else Start.clean
            return self._pgd(model, x, lambda logits: F.cross_entropy(logits.float(), y, reduction="sum"), start)
        with eval_mode(model), torch.no_grad():
            p_clean = torch.softmax(model(x).float(), dim=1)
        start = Start.normal if self.random_start else Start.clean
        return self._pgd(model, x, lambda logits: _kl(p_clean, logits, reduction="sum"), start)

    def _pgd(self, model: nn.Module, x: torch.Tensor, loss_fn: LossFn, start: Start) -> torch.Tensor:
        return pgd(
            model,
            x,
            loss_fn,
            norm=self.norm,
            eps=self.eps,
            step_size=self.step_size,
            steps=self.steps,
            start=start,
            bounds=self.bounds,
            mask=self._mask(x.device),
        )

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        adv_logits = model(self.attack(model, batch))
        if self.method == AdversarialMethod.pgd:
            return F.cross_entropy(adv_logits.float(), batch.y)
        return _kl(torch.softmax(logits.float(), dim=1), adv_logits, reduction="batchmean")


def _kl(p_clean: torch.Tensor, adv_logits: torch.Tensor, reduction: str) -> torch.Tensor:
    """KL(p_clean ‖ softmax(adv_logits)), as TRADES' ``KLDivLoss(log_softmax(adv), p_clean)``."""
    return F.kl_div(F.log_softmax(adv_logits.float(), dim=1), p_clean, reduction=reduction)


@register_term("adversarial", schema=AdversarialConfig)
def build_adversarial(cfg: AdversarialConfig, meta: DatasetMeta) -> AdversarialTerm:
    check_attackable(meta, "regularizer adversarial")
    return AdversarialTerm(cfg, attack_bounds(meta), feature_mask(meta))
