"""FRL-Reweight: class weights on the adversarial loss, raised for the classes whose robust
error on the validation split is above the mean (``regularizer=[adversarial,robust_fairness]``).

Xu, Liu, Li, Jain & Tang 2021, "To be Robust or to be Fair: Towards Fairness in Adversarial
Training" [https://arxiv.org/abs/2010.06121], Algorithm 1 (the Reweight strategy). The paper
trains on the Lagrangian

    L(f, φ) = R(f) + Σ_i φ_i · (R(f, i) − R(f) − τ),        φ_i ≥ 0,

a max-min game: each epoch trains f on L for fixed φ, then measures the per-class errors
R(f, i) on the validation split and takes one projected ascent step on the multipliers,

    φ_i ← max(0, φ_i + α · (R(f, i) − R(f) − τ)).

With R(f) the mean of the K class errors (balanced classes), L(f, φ) = Σ_j R(f, j)/K · w_j with

    w_j = 1 + K·φ_j − Σ_i φ_i,

so each class's loss is weighted by w_j: above 1 for a class whose multiplier is above the
mean, below 1 otherwise, and the weights average 1 over the classes (the loss keeps its
scale). As in the authors' code (hannxu123/fair_robust, ``normalize_lambda``), the
multipliers are clamped at 0 and, when their sum exceeds ``max_total``, scaled back to sum
``max_total``; so every weight stays ≥ 1 − ``max_total`` > 0 (a negative weight would train
that class to be *mis*classified). The defaults α = 0.1 and τ = 0.1 are the authors' code's
for the boundary multipliers (its update rate 0.05, doubled for them; bound 0.1).

Where this departs from the paper, and why:

- **One set of multipliers, on the robust error.** The paper keeps two: φ_nat on the
  natural (clean) error, weighting the clean loss, and φ_bndy on the boundary error (right
  on x, wrong on some x + δ), weighting TRADES' KL. Here the adversarial term is one loss
  (Madry's cross-entropy on PGD examples, whose surrogate is the robust error = natural +
  boundary; or TRADES' KL), and the clean cross-entropy belongs to the objective, not to this
  term. So one φ per class is kept, driven by the class's robust error R_rob(f, i) (wrong on
  the PGD example), and it weights the adversarial term's per-example losses only. Under
  ``method=trades`` the KL is weighted by the robust error's multipliers, not the boundary
  error's.
- **The sum cap** ``max_total`` (the code's ``lim``) is not in Algorithm 1; see above.
- **R(f) is the mean over the classes present** in the (first ``limit``) validation
  examples, rather than the overall error; the two agree on class-balanced data. A class
  absent from those examples keeps its multiplier.
- The loss is not divided by Σ weights per batch as the authors' code does: the brief's
  value, ``Σ_i w[y_i]·ℓ_i / N``, keeps the adversarial loss's own scale (the weights average
  1 over classes, so on balanced batches the two are close).

How it enters the objective: the term ``needs = ("adversarial",)``. The ``Objective`` runs
the adversarial term first on each batch and hands it over once through ``bind``; this term
then reads that call's per-example losses ``ℓ_i`` (``last_example_losses``) instead of
attacking again. Its value on a batch is

    mean_i (w[y_i] − 1) · ℓ_i,

and its weight in the objective is ``weight × regularizer.adversarial.weight`` (set in
``bind``), so the adversarial loss becomes ``a · Σ_i (1 + λ·(w[y_i] − 1)) · ℓ_i / N`` with
a the adversarial weight and λ = ``regularizer.robust_fairness.weight``: λ = 1 is FRL's
``a · Σ_i w[y_i]·ℓ_i / N``, λ = 0 plain adversarial training. ``train/robust_fairness``
logs the unweighted value (0 in the first epoch, when every w is 1).

After each epoch (``end_epoch``) the first ``limit`` validation examples are attacked with
the adversarial term's own ``dq.attacks.PGD`` object (cross-entropy with the true labels,
eval mode, a generator seeded with 0, as robust evaluation does), the multipliers take their
step, and ``robust_fairness/weight/<class>`` and ``robust_fairness/val_robust_error/<class>``
go into that epoch's line of metrics.jsonl. The multipliers are saved in last.pt
(``state_dict``), so a resumed run continues with them.

Example::

    >>> objective = build_objective({"adversarial": AdversarialConfig(), "robust_fairness": RobustFairnessConfig()}, meta)
    >>> out = objective(model, batch)                  # adversarial term first, then this one
    >>> objective.end_epoch(model, splits.val, device)  # {"robust_fairness/weight/<class>": ..., ...}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dq import metric_keys as keys
from dq.config.validation import require
from dq.data_records import Batch, DatasetMeta, Split
from dq.objectives.base import Term
from dq.objectives.registry import register_term

ATTACK_BATCH = 256  # validation examples attacked at once in ``end_epoch``


@dataclass
class RobustFairnessConfig:
    """``regularizer.robust_fairness``: FRL-Reweight's class weights on the adversarial loss.

    ``weight`` λ scales the reweighting (its weight in the objective is λ times the
    adversarial weight): 1 = the paper's weighted adversarial loss, 0 = none. ``tau`` is the
    tolerated excess of a class's validation robust error over the mean, ``alpha`` the
    multipliers' step size, ``max_total`` the cap on their sum (every class weight stays
    ≥ 1 − max_total), ``limit`` the number of validation examples attacked after each epoch
    (null: all)."""

    weight: float = 1.0
    tau: float = 0.1
    alpha: float = 0.1
    max_total: float = 0.5
    limit: int | None = 1000

    def validate(self) -> None:
        require(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        require(self.tau >= 0, "tau", f"must be >= 0, got {self.tau}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0 < self.max_total < 1, "max_total", f"must be in (0, 1) to keep weights > 0, got {self.max_total}")
        require(self.limit is None or self.limit > 0, "limit", f"must be > 0 or null, got {self.limit}")


def update_multipliers(
    phi: torch.Tensor, errors: torch.Tensor, *, alpha: float, tau: float, max_total: float
) -> torch.Tensor:
    """One projected ascent step of Algorithm 1 on the multipliers φ [K].

    ``errors`` [K] are the per-class validation robust errors, NaN for a class with no
    example (its φ stays). φ_i ← max(0, φ_i + α·(e_i − mean(e) − τ)), then scaled to sum
    ``max_total`` if it sums to more.
    """
    present = ~torch.isnan(errors)
    if not bool(present.any()):
        return phi.clone()
    gap = torch.zeros_like(phi)
    gap[present] = errors[present] - errors[present].mean() - tau
    phi = (phi + alpha * gap).clamp_min(0.0)
    total = float(phi.sum())
    return phi * (max_total / total) if total > max_total else phi


def class_weights(phi: torch.Tensor) -> torch.Tensor:
    """w_j = 1 + K·φ_j − Σ_i φ_i: the Lagrangian's weight on class j's loss (mean 1 over classes)."""
    return 1.0 + phi.numel() * phi - phi.sum()


class RobustFairness(Term):
    r"""FRL-Reweight: per-class weights on the adversarial term's per-example losses.

    See the module docstring for the paper, the update and where it departs from it.

    Arguments:
        cfg (RobustFairnessConfig): ``weight`` (λ), ``tau``, ``alpha``, ``max_total``, ``limit``.
        meta (DatasetMeta): the class names (metric keys) and their number K.

    Shape:
        - batch.y: [N] labels; the adversarial term's ``last_example_losses``: [N].
        - logits: [N, K] clean logits (unused).
        - output: scalar, ``mean_i (w[y_i] − 1)·ℓ_i``.

    Examples::

        >>> term = RobustFairness(RobustFairnessConfig(), meta)
        >>> term.bind({"adversarial": adversarial_term})
        >>> value = term(model, batch, logits)  # after adversarial_term(model, batch, logits)
    """

    name = "robust_fairness"
    needs = ("adversarial",)

    def __init__(self, cfg: RobustFairnessConfig, meta: DatasetMeta) -> None:
        self.strength = float(cfg.weight)
        self.weight = self.strength
        self.tau = float(cfg.tau)
        self.alpha = float(cfg.alpha)
        self.max_total = float(cfg.max_total)
        self.limit = cfg.limit
        self.class_names = [keys.key_part(name) for name in meta.class_names]
        self.phi = torch.zeros(meta.num_classes, dtype=torch.float64)
        self.adversarial = None
        self._batch_weights: torch.Tensor | None = None  # self.weights on the training device, per epoch

    @property
    def weights(self) -> torch.Tensor:
        """The class weights w [K] (float64, CPU) in use for the next epoch."""
        return class_weights(self.phi)

    def bind(self, terms: dict) -> None:
        """Take the adversarial term; weigh this one by λ × its weight (see the module docstring)."""
        self.adversarial = terms["adversarial"]
        self.weight = self.strength * float(self.adversarial.weight)

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        losses = self.adversarial.last_example_losses
        if self._batch_weights is None or self._batch_weights.device != losses.device:
            # Derived from φ once per epoch: no host-to-device copy in every training step.
            self._batch_weights = self.weights.to(device=losses.device, dtype=losses.dtype)
        return ((self._batch_weights[batch.y] - 1.0) * losses).mean()

    def robust_errors(self, model: nn.Module, val: Split, device: torch.device) -> torch.Tensor:
        """Per-class robust error [K] (NaN for a class absent) on the first ``limit`` examples
        of ``val``, under the adversarial term's PGD attack with a seeded start."""
        split = val if self.limit is None else val.subset(slice(0, self.limit))
        generator = torch.Generator(device=device).manual_seed(0)
        predicted = self.adversarial.attack.predict(model, split, device, ATTACK_BATCH, generator)
        y_all = split.y.cpu()
        wrong_all = (predicted != y_all).double()
        k = self.phi.numel()
        count = torch.bincount(y_all, minlength=k).double()
        errors = torch.zeros(k, dtype=torch.float64).index_add(0, y_all, wrong_all) / count
        return torch.where(count > 0, errors, torch.full_like(errors, float("nan")))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The multipliers φ, which carry over from epoch to epoch (saved in last.pt)."""
        return {"phi": self.phi.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.phi = state["phi"].to(dtype=torch.float64, device="cpu").clone()
        self._batch_weights = None

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """Measure the per-class robust errors, step the multipliers; return weights and errors."""
        if len(val) == 0:
            return {}
        errors = self.robust_errors(model, val, device)
        self.phi = update_multipliers(self.phi, errors, alpha=self.alpha, tau=self.tau, max_total=self.max_total)
        self._batch_weights = None
        out = {f"{self.name}/weight/{name}": float(w) for name, w in zip(self.class_names, self.weights, strict=True)}
        for name, error in zip(self.class_names, errors.tolist(), strict=True):
            if error == error:  # not NaN: the class had validation examples
                out[f"{self.name}/val_robust_error/{name}"] = error
        return out


@register_term("robust_fairness", schema=RobustFairnessConfig)
def build_robust_fairness(cfg: RobustFairnessConfig, meta: DatasetMeta) -> RobustFairness:
    """The term; the ``Objective`` refuses it without an active ``adversarial`` term."""
    return RobustFairness(cfg, meta)
