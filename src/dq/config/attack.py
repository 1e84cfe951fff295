"""The attack configuration that adversarial training (``regularizer.adversarial``) and
robust evaluation (``eval.robust``) share: one PGD attack's norm, radius and steps."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dq.config.validation import require


class AttackNorm(StrEnum):
    linf = "linf"
    l2 = "l2"


@dataclass
class AttackConfig:
    """A PGD attack: ``steps`` steps of size ``alpha`` (default 2.5·eps/steps) inside the
    ``norm`` ball of radius ``eps``, from a random start or the clean input."""

    norm: AttackNorm = AttackNorm.linf
    eps: float = 0.1
    alpha: float | None = None
    steps: int = 10
    random_start: bool = True

    def validate(self) -> None:
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        require(self.alpha is None or self.alpha > 0, "alpha", f"must be > 0 or null, got {self.alpha}")
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")

    @property
    def step_size(self) -> float:
        return self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps
