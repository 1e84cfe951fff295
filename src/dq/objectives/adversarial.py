"""Adversarial training: the ``adversarial`` term (``regularizer=[adversarial]``), one class
per method, picked by ``regularizer.adversarial.method`` through ``METHODS``: Madry's PGD
training, TRADES, fast FGSM training from a random start (``fgsm_rs``, a PGD of one step)
and N-FGSM (``n_fgsm``: one step from a larger noise, not projected back to the ε-ball).

All attack with the same ``dq.attacks.PGD`` that robust evaluation uses, with the model
in eval mode; the loss on the adversarial batch is then computed in the model's training
mode, as in both papers' code. Images are clipped to their valid range ([0, 1]); tabular
data moves only the standardised continuous columns; series move freely; text moves the
output of ``model.embedding`` (per-token ε, padding fixed; see dq.attacks.spaces).

The classes keep, after every call, ``last_example_losses``: the per-example losses
[N] of that call, with their graph, whose mean is the value returned. A term that
reweights the adversarial loss (``needs = ("adversarial",)``) reads them instead of
attacking the batch a second time. They are computed beside the returned mean from the
same adversarial logits, so the returned value and its gradients do not change.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dq import metric_keys as keys
from dq.attacks import PGD, Start, eval_mode
from dq.config.attack import AttackConfig
from dq.config.validation import require
from dq.data_records import Batch, DatasetMeta, Split
from dq.objectives.base import Term
from dq.objectives.overfitting_guard import GuardedTerm, OverfittingGuard
from dq.objectives.registry import register_term


class AdversarialMethod(StrEnum):
    pgd = "pgd"
    trades = "trades"
    fgsm_rs = "fgsm_rs"
    n_fgsm = "n_fgsm"


SINGLE_STEP = (AdversarialMethod.fgsm_rs, AdversarialMethod.n_fgsm)  # guarded, spaced validation by default
MIXING = (AdversarialMethod.pgd, *SINGLE_STEP)  # weight mixes clean and adversarial CE
FGSM_RS_STEP = 1.25  # α = 1.25·ε, Wong, Rice & Kolter 2020
N_FGSM_STEP = 1.0  # α = ε, de Jorge et al. 2022
# One-step methods measure val/robust_accuracy every 3rd epoch: their budget is 2.5 clean epochs.
SINGLE_STEP_VAL_EVERY = 3


@dataclass
class AdversarialConfig(AttackConfig):
    """``regularizer.adversarial``: the attack (shared with ``eval.robust``) plus how its
    loss enters the objective. ``method=pgd`` (Madry): loss = (1 − weight)·CE(clean) +
    weight·CE(adversarial). ``method=trades``: CE(clean) + weight·KL(clean ‖ adversarial),
    weight being TRADES' β. ``method=fgsm_rs``: as ``pgd`` with one step of ``alpha``
    (default 1.25·eps) from a uniform random start; ``steps`` is not used.
    ``method=n_fgsm``: as ``pgd`` with one step of ``alpha`` (default eps) from uniform
    noise in the ball of ``noise``·eps (default 2), not projected back to the eps-ball;
    ``steps`` is not used, ``noise`` only here.

    Every ``val_every`` epochs and at the last (null: every epoch, every 3rd for
    ``fgsm_rs``/``n_fgsm``) the first n validation examples are attacked with PGD of
    ``steps`` steps at the training ``eps`` from a seeded random start (for every method,
    fgsm_rs included): ``val/robust_accuracy`` (NaN in the epochs between), which the
    robust presets monitor to select their epoch (``trainer.early_stopping.monitor=val/robust_accuracy``, mode max).
    n is fixed at the first measurement so that the attack costs at most 15% of the training
    attack's passes (at least 100 examples; at most ``val_limit``, null: no limit, and the
    split), and logged once (``RobustValidation``): a bounded share of fgsm_rs' budget of 2.5
    clean epochs whatever the validation split's size, with fgsm_rs' spacing.

    The catastrophic-overfitting guard (``co_guard``; null: on for ``fgsm_rs`` and ``n_fgsm``) watches
    that same ``val/robust_accuracy`` (no attack of its own); when it falls more than
    ``co_guard_drop`` below its best, training stops and the best measured epoch's weights
    are kept (dq.objectives.overfitting_guard)."""

    weight: float = 1.0
    method: AdversarialMethod = AdversarialMethod.pgd
    co_guard: bool | None = None
    co_guard_drop: float = 0.2
    val_limit: int | None = 500
    val_every: int | None = None
    noise: float = 2.0

    def validate(self) -> None:
        super().validate()
        require(
            self.val_limit is None or self.val_limit >= 1, "val_limit", f"must be >= 1 or null, got {self.val_limit}"
        )
        require(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        require(
            self.method not in MIXING or self.weight <= 1,
            "weight",
            f"mixes clean and adversarial loss for method={self.method}: must be in [0, 1], got {self.weight}",
        )
        require(
            self.method not in SINGLE_STEP or self.random_start,
            "random_start",
            f"must be true for method={self.method} (FGSM from the clean input overfits catastrophically; "
            "Wong et al. 2020); got false",
        )
        require(self.noise >= 0, "noise", f"must be >= 0 (n_fgsm's noise radius in units of eps), got {self.noise}")
        require(
            self.val_every is None or self.val_every >= 1, "val_every", f"must be >= 1 or null, got {self.val_every}"
        )
        require(0 < self.co_guard_drop <= 1, "co_guard_drop", f"must be in (0, 1], got {self.co_guard_drop}")

    @property
    def guarded(self) -> bool:
        """Whether the catastrophic-overfitting guard runs: ``co_guard``, or for null the method's default."""
        return self.method in SINGLE_STEP if self.co_guard is None else bool(self.co_guard)

    @property
    def robust_val_every(self) -> int:
        """Epochs between two ``val/robust_accuracy`` measurements: ``val_every``, or for null the method's default."""
        if self.val_every is not None:
            return self.val_every
        return SINGLE_STEP_VAL_EVERY if self.method in SINGLE_STEP else 1


VAL_ROBUST_ACCURACY = keys.val("robust_accuracy")
VAL_ATTACK_BATCH = 256  # validation examples attacked at once
VAL_SEED = 0  # the attack's random start: the same every epoch, so epochs compare on one attack
VAL_SHARE = 0.15  # the validation attack's passes: at most this share of the training attack's
VAL_MIN_EXAMPLES = 100  # ... but never fewer examples than this (or than the split has)

logger = logging.getLogger(__name__)


class RobustValidation:
    """``val/robust_accuracy`` every ``every`` epochs and at the fit's last (``start_fit``): PGD
    accuracy on the first ``n`` validation examples, from a seeded start; NaN in the epochs
    between, which epoch selection skips (dq.engine.early_stopping).

    Selecting the epoch on clean validation loss or accuracy under-reports robust training
    (clean accuracy peaks early, before robustness has grown); this measures what the
    training aims at. Its cost is a bounded share of training, by a count: the attack costs
    about (steps + 1) passes per example, training's attack (attack steps + 1) per training
    example, so at the first measurement ``n`` is fixed at ``VAL_SHARE`` × the training passes
    since the start / (steps + 1), at least ``VAL_MIN_EXAMPLES``, at most ``limit`` and the
    split; the same ``n`` (the same examples) then serves every measured epoch, and is logged
    once. fgsm_rs on Fashion-MNIST 2k (2,000 validation images): 163 of them, not 500.
    """

    def __init__(self, cfg: AdversarialConfig, meta: DatasetMeta) -> None:
        attack = AttackConfig(norm=cfg.norm, eps=cfg.eps, steps=cfg.steps, random_start=True)
        self.attack = PGD(attack, meta)
        self.limit = cfg.val_limit
        self.every = cfg.robust_val_every
        self.epochs = 0  # end_epoch calls so far: the epoch just finished
        self.last_epoch: int | None = None  # the fit's last epoch (start_fit), always measured
        self.trained_passes = 0  # the training attack's passes (examples × (steps + 1)) so far
        self.examples: int | None = None  # validation examples attacked, fixed at the first measurement

    def trained(self, examples: int, passes: int) -> None:
        """Counts a training batch of ``examples``, attacked with ``passes`` passes each."""
        self.trained_passes += examples * passes

    def choose(self, available: int) -> int:
        """The number of validation examples every measurement attacks (see the class)."""
        share = int(VAL_SHARE * self.trained_passes / (self.attack.steps + 1))
        examples = min(available, max(share, VAL_MIN_EXAMPLES))
        if self.limit is not None:
            examples = min(examples, self.limit)
        logger.info(
            "val/robust_accuracy: PGD-%d on the first %d of %d validation examples every %d epoch(s) "
            "(val_limit %s; cap %d: %.0f%% of the %d training attack passes so far / %d passes per example)",
            self.attack.steps,
            examples,
            available,
            self.every,
            self.limit,
            share,
            100 * VAL_SHARE,
            self.trained_passes,
            self.attack.steps + 1,
        )
        return examples

    def start_fit(self, epochs: int) -> None:
        """The fit ends after epoch ``epochs``: measured even off the spacing, so that its
        weights can be selected (fgsm_rs for 10 epochs: epochs 3, 6, 9 and 10)."""
        self.last_epoch = epochs

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        if len(val) == 0:
            return {}
        self.epochs += 1
        if self.epochs % self.every and self.epochs != self.last_epoch:
            return {VAL_ROBUST_ACCURACY: math.nan}
        if self.examples is None:
            self.examples = self.choose(len(val))
        split = val.subset(slice(0, self.examples))
        generator = torch.Generator(device=device).manual_seed(VAL_SEED)
        predicted = self.attack.predict(model, split, device, VAL_ATTACK_BATCH, generator)
        return {VAL_ROBUST_ACCURACY: float((predicted == split.y.cpu()).float().mean())}

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to keep the spacing and the examples: the epochs and passes counted, ``n``."""
        return {"epochs": self.epochs, "trained_passes": self.trained_passes, "examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = int(state["epochs"])
        self.trained_passes = int(state["trained_passes"])
        self.examples = state["examples"]


class RobustlyValidated(Term):
    """A term trained against an attack: each epoch ends with ``val/robust_accuracy``
    (its ``validation``, a ``RobustValidation``), whose counts are the term's state."""

    val_metrics = (VAL_ROBUST_ACCURACY,)
    validation: RobustValidation

    def start_fit(self, epochs: int) -> None:
        self.validation.start_fit(epochs)

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """``val/robust_accuracy`` (``RobustValidation``)."""
        return self.validation.end_epoch(model, val, device)

    def state_dict(self) -> dict[str, Any]:
        """``RobustValidation``'s counts and chosen examples."""
        return self.validation.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.validation.load_state_dict(state)


class MadryPGD(RobustlyValidated):
    r"""PGD adversarial training: cross-entropy on PGD examples.

    Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"
    [https://arxiv.org/abs/1706.06083]. The attack maximises the cross-entropy with the
    true labels inside the ε-ball, from a uniform random start (``random_start``) or the
    clean input. The term declares ``task_share = weight``, so the objective is
    ``(1 − w)·CE(clean) + w·CE(adversarial)`` (w = 1: pure adversarial training).

    Arguments:
        cfg (AdversarialConfig): ``weight`` (w, in [0, 1]), ``norm`` (``linf`` | ``l2``),
            ``eps``, ``alpha`` (step size, default 2.5·eps/steps), ``steps``, ``random_start``.
        meta (DatasetMeta): picks what moves (input, tabular continuous columns, or the
            text embedding) and the bounds.

    Shape:
        - batch.x: [N, ...] inputs (token ids [N, L] for text); batch.y: [N] labels.
        - logits: [N, K] clean logits (unused: Madry's term needs only the adversarial ones).
        - output: scalar, the mean cross-entropy on the adversarial batch.
        - ``last_example_losses``: [N], each example's cross-entropy on its adversarial
          version (with its graph), set on every call; their mean is the output.

    Examples::

        >>> term = MadryPGD(AdversarialConfig(eps=8 / 255, steps=10), meta)
        >>> loss = (1 - term.weight) * F.cross_entropy(model(batch.x), batch.y) + term.weight * term(model, batch, None)
    """

    name = "adversarial"
    reads_logits = False  # the loss is the adversarial batch's alone
    last_example_losses: torch.Tensor

    def __init__(self, cfg: AdversarialConfig, meta: DatasetMeta) -> None:
        self.weight = float(cfg.weight)
        self.task_share = self.weight
        self.attack = PGD(cfg, meta)
        self.validation = RobustValidation(cfg, meta)

    def perturb(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The PGD perturbation for ``batch`` (detached, in the attack's space)."""
        y = batch.y
        return self.attack(model, batch.x, lambda logits: F.cross_entropy(logits.float(), y, reduction="sum"))

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        self.validation.trained(len(batch.y), self.attack.steps + 1)
        adv_logits = self.attack.logits(model, batch.x, self.perturb(model, batch))
        self.last_example_losses = F.cross_entropy(adv_logits.float(), batch.y, reduction="none")
        return F.cross_entropy(adv_logits.float(), batch.y)


class FastFGSM(MadryPGD):
    r"""Fast adversarial training: FGSM from a uniform random start, step α = 1.25·ε.

    Wong, Rice & Kolter 2020, "Fast is better than free: Revisiting adversarial training"
    [https://arxiv.org/abs/2001.03994]. δ starts uniform in the ε-ball, takes one signed
    gradient step of α (L2: one normalised step), and is projected back onto the ball and
    the valid input range: a PGD of one step from a random start, so it is
    ``dq.attacks.PGD`` with ``steps=1`` and its own step size. The loss mixes as Madry's:
    ``(1 − w)·CE(clean) + w·CE(adversarial)``. About two forward-backward passes per batch
    against PGD-10's eleven; it can overfit catastrophically (robust accuracy collapses
    within an epoch), hence the guard (``co_guard``, on by default for this method).

    Arguments:
        cfg (AdversarialConfig): ``weight`` (w, in [0, 1]), ``norm``, ``eps``, ``alpha``
            (default 1.25·eps); ``steps`` is not used, ``random_start`` must be true.
        meta (DatasetMeta): what moves and the bounds, as for ``MadryPGD``.

    Shape: as ``MadryPGD``.

    Examples::

        >>> term = FastFGSM(AdversarialConfig(method="fgsm_rs", eps=0.1), meta)
        >>> term.attack.step_size, term.attack.steps
        (0.125, 1)
    """

    def __init__(self, cfg: AdversarialConfig, meta: DatasetMeta) -> None:
        alpha = cfg.alpha if cfg.alpha is not None else FGSM_RS_STEP * cfg.eps
        one_step = AttackConfig(norm=cfg.norm, eps=cfg.eps, alpha=alpha, steps=1, random_start=True)
        super().__init__(cfg, meta)
        self.attack = PGD(one_step, meta)  # replaces the PGD of ``steps`` steps built above


class NoisyFGSM(MadryPGD):
    r"""N-FGSM: one FGSM step of α = ε from stronger uniform noise, not projected back to the ε-ball.

    de Jorge et al. 2022, "Make Some Noise: Reliable and Efficient Single-Step Adversarial
    Training" [https://arxiv.org/abs/2202.01181]. δ starts uniform in the ball of radius
    k·ε (``noise`` = k, 2 in the paper), takes one signed gradient step of α (L2: one
    normalised step) and stays where it lands, clipped only to the valid input range: it
    may reach (k·ε + α) from the clean input, 3ε by default. The paper finds that the
    larger noise, with no projection, avoids catastrophic overfitting without a guard
    and at fgsm_rs' cost tracks PGD-10's robustness more closely than FGSM-RS does. In dq it is
    ``dq.attacks.PGD`` with one step started in the k·ε-ball and projected onto the
    (k·ε + α)-ball, which that step cannot leave. Mixed as Madry's:
    ``(1 − w)·CE(clean) + w·CE(adversarial)``; guarded and validated every 3rd epoch
    by default, as fgsm_rs.

    Arguments:
        cfg (AdversarialConfig): ``weight`` (w, in [0, 1]), ``norm``, ``eps``, ``alpha``
            (default eps), ``noise`` (k); ``steps`` is not used, ``random_start`` must be true.
        meta (DatasetMeta): what moves and the bounds, as for ``MadryPGD``.

    Shape: as ``MadryPGD``.

    Examples::

        >>> term = NoisyFGSM(AdversarialConfig(method="n_fgsm", eps=0.1), meta)
        >>> term.attack.start_eps, term.attack.step_size  # it can reach 0.2 + 0.1 from x
        (0.2, 0.1)
    """

    def __init__(self, cfg: AdversarialConfig, meta: DatasetMeta) -> None:
        alpha = cfg.alpha if cfg.alpha is not None else N_FGSM_STEP * cfg.eps
        noise = cfg.noise * cfg.eps
        unprojected = AttackConfig(norm=cfg.norm, eps=noise + alpha, alpha=alpha, steps=1, random_start=True)
        super().__init__(cfg, meta)
        self.attack = PGD(unprojected, meta, start_eps=noise)  # replaces the PGD of ``steps`` steps built above


class TRADES(RobustlyValidated):
    r"""TRADES: KL divergence between the clean and the adversarial prediction.

    Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy"
    [https://arxiv.org/abs/1901.08573]. The attack maximises ``KL(p_clean ‖ p_adv)`` inside
    the ε-ball, started from ``x + 0.001·N(0, 1)`` (``random_start``) or the clean input;
    the term is that KL on the adversarial batch, and the objective is
    ``CE(clean) + β·KL`` with β = ``weight`` (``task_share`` 0).

    Arguments:
        cfg (AdversarialConfig): ``weight`` (β ≥ 0, 6 in the paper), ``norm``, ``eps``,
            ``alpha``, ``steps``, ``random_start``.
        meta (DatasetMeta): picks what moves and the bounds, as for ``MadryPGD``.

    Shape:
        - batch.x: [N, ...] inputs (token ids [N, L] for text); batch.y: [N] labels (unused).
        - logits: [N, K] clean logits of the training forward pass (gradients flow through both).
        - output: scalar, ``KL(softmax(logits) ‖ softmax(adv_logits))`` averaged over the batch.
        - ``last_example_losses``: [N], each example's KL (summed over classes, with its
          graph), set on every call; their mean is the output.

    Examples::

        >>> term = TRADES(AdversarialConfig(method="trades", weight=6.0, eps=0.1), meta)
        >>> logits = model(batch.x)
        >>> loss = F.cross_entropy(logits, batch.y) + term.weight * term(model, batch, logits)
    """

    name = "adversarial"
    task_share = 0.0
    last_example_losses: torch.Tensor

    def __init__(self, cfg: AdversarialConfig, meta: DatasetMeta) -> None:
        self.weight = float(cfg.weight)
        self.attack = PGD(cfg, meta, start=Start.normal if cfg.random_start else Start.clean)
        self.validation = RobustValidation(cfg, meta)

    def perturb(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The perturbation that maximises the KL to the clean prediction (detached)."""
        with eval_mode(model), torch.no_grad():
            p_clean = torch.softmax(model(batch.x).float(), dim=1)
        return self.attack(model, batch.x, lambda logits: _kl(p_clean, logits, reduction="sum"))

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        self.validation.trained(len(batch.y), self.attack.steps + 1)
        adv_logits = self.attack.logits(model, batch.x, self.perturb(model, batch))
        p_clean = torch.softmax(logits.float(), dim=1)
        self.last_example_losses = _kl(p_clean, adv_logits, reduction="none").sum(dim=1)
        return _kl(p_clean, adv_logits, reduction="batchmean")


def _kl(p_clean: torch.Tensor, adv_logits: torch.Tensor, reduction: str) -> torch.Tensor:
    """KL(p_clean ‖ softmax(adv_logits)), as TRADES' ``KLDivLoss(log_softmax(adv), p_clean)``."""
    return F.kl_div(F.log_softmax(adv_logits.float(), dim=1), p_clean, reduction=reduction)


METHODS: dict[AdversarialMethod, type[MadryPGD] | type[TRADES]] = {
    AdversarialMethod.pgd: MadryPGD,
    AdversarialMethod.trades: TRADES,
    AdversarialMethod.fgsm_rs: FastFGSM,
    AdversarialMethod.n_fgsm: NoisyFGSM,
}


@register_term("adversarial", schema=AdversarialConfig)
def build_adversarial(cfg: AdversarialConfig, meta: DatasetMeta) -> MadryPGD | TRADES | GuardedTerm:
    """The term of ``cfg.method``, wrapped in the catastrophic-overfitting guard when it is
    on; DQUserError for tabular data without continuous columns."""
    term = METHODS[AdversarialMethod(cfg.method)](cfg, meta)
    if not cfg.guarded:
        return term
    return GuardedTerm(term, OverfittingGuard(VAL_ROBUST_ACCURACY, cfg.co_guard_drop))
