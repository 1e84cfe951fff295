"""Schemas of ``conf/optimizer/``, one per choice (``dq.engine.optim`` builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dq.config.validation import require

# torch's optimizers pass the learning rate to float32 kernels as a scalar: SGD as lr (and
# lr * weight_decay), Adam as lr / (1 - beta1) on its first step (the bias correction).
# Past float32's largest number that conversion fails with a traceback before anything is
# trained (optimizer.lr=1e38 with Adam). The bound is that limit and not a "sane" one:
# a huge but representable lr (1e30) is how tests/test_sweep.py and tests/test_resume.py
# make a real run diverge, which dq reports as a failed run (TrainingDiverged).
FLOAT32_MAX = 3.4028234663852886e38


def check_lr(lr: float, scale: float, weight_decay: float, why: str) -> None:
    """``lr`` > 0, and ``lr * scale`` and ``lr * weight_decay`` within float32."""
    require(lr > 0, "lr", f"must be > 0, got {lr}")
    bound = FLOAT32_MAX / scale
    require(lr <= bound, "lr", f"must be <= {bound:.3g} ({why} must stay within float32's {FLOAT32_MAX:.3g}), got {lr}")
    require(lr * weight_decay <= FLOAT32_MAX, "weight_decay", f"times lr must stay within float32's {FLOAT32_MAX:.3g}")


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0

    def validate(self) -> None:
        check_lr(self.lr, 1.0, self.weight_decay, "the step size")
        require(0.0 <= self.momentum < 1.0, "momentum", f"must be in [0, 1), got {self.momentum}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(not self.nesterov or self.momentum > 0, "nesterov", "needs momentum > 0")


@dataclass
class AdamConfig:
    """Adam; ``decoupled: true`` gives AdamW (weight decay decoupled from the gradient)."""

    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    decoupled: bool = False

    def validate(self) -> None:
        require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            "betas",
            f"must be two numbers in [0, 1), got {list(self.betas)}",
        )
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check_lr(self.lr, 1 / (1 - self.betas[0]), self.weight_decay, "lr / (1 - betas[0]), Adam's first step,")


OPTIMIZER_SCHEMAS: dict[str, type] = {"sgd": SGDConfig, "adam": AdamConfig}
