"""Schemas of ``conf/optimizer/``, one per choice (``dq.engine.optim`` builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dq.config.validation import require

# The largest learning rate: torch's optimizers scale it in float32 (Adam by up to
# 1/(1 - beta1) in its bias correction), and optimizer.lr=1e38 overflowed there with a
# traceback before the first step. Published schedules stay below ~10 (even LARS with huge
# batches); 1e6 leaves five orders of magnitude of room and far from float32's 3.4e38.
LR_MAX = 1e6


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0

    def validate(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.lr <= LR_MAX, "lr", f"must be <= {LR_MAX:g}, got {self.lr}")
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
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.lr <= LR_MAX, "lr", f"must be <= {LR_MAX:g}, got {self.lr}")
        require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            "betas",
            f"must be two numbers in [0, 1), got {list(self.betas)}",
        )
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")


OPTIMIZER_SCHEMAS: dict[str, type] = {"sgd": SGDConfig, "adam": AdamConfig}
