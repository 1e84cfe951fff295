"""Schema of ``conf/eval/``: evaluation beyond accuracy (robust accuracy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dq.config.attack import AttackConfig, AttackNorm
from dq.config.validation import require

# The most bootstrap resamples: each is a draw and a count over the whole test split
# (dq.metrics.intervals), so eval.bootstrap=10**12 would never end after training. Percentile intervals settle
# with 1,000-2,000 resamples (Efron & Tibshirani); 10,000 is ample.
BOOTSTRAP_MAX = 10_000


class RobustAttack(StrEnum):
    """pgd: the fast default; autoattack: also Croce & Hein's standard ensemble (pyautoattack);
    apgd: also its two APGD attacks only (APGD-CE, APGD-T), a cheaper version under its own keys."""

    pgd = "pgd"
    autoattack = "autoattack"
    apgd = "apgd"


@dataclass
class RobustEvalConfig:
    """PGD evaluation on the test split at each radius in ``eps`` (empty: none).
    ``limit`` evaluates the first N test examples only."""

    eps: list[float] = field(default_factory=list)
    attack: RobustAttack = RobustAttack.pgd
    norm: AttackNorm = AttackNorm.linf
    alpha: float | None = None
    steps: int = 20
    random_start: bool = True
    limit: int | None = None

    def validate(self) -> None:
        require(all(e > 0 for e in self.eps), "eps", f"must all be > 0, got {list(self.eps)}")
        require(self.alpha is None or self.alpha > 0, "alpha", f"must be > 0 or null, got {self.alpha}")
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        require(self.limit is None or self.limit > 0, "limit", f"must be > 0 or null, got {self.limit}")

    def at(self, eps: float) -> AttackConfig:
        """The attack at one radius: the same object adversarial training uses."""
        return AttackConfig(norm=self.norm, eps=eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start)


@dataclass
class EvalConfig:
    """``bootstrap``: resamples for the 95% intervals of every group metric (0: none)."""

    robust: RobustEvalConfig = field(default_factory=RobustEvalConfig)
    bootstrap: int = 200

    def validate(self) -> None:
        require(
            0 <= self.bootstrap <= BOOTSTRAP_MAX,
            "bootstrap",
            f"must be in [0, {BOOTSTRAP_MAX}] (0 turns intervals off), got {self.bootstrap}",
        )
