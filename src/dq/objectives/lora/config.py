"""The ``regularizer.lora`` schema: the one config the adapters, the base loading and the
transform read (``conf/regularizer/lora.yaml`` gives its defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from dq.config.validation import require


@dataclass
class LoRAConfig:
    """Low-rank adapters h = W₀x + (alpha/rank)·B·A·x on the Linear and Conv layers whose
    names match ``target``; every other parameter is frozen unless ``train`` names it.
    ``init_from`` is a finished run directory whose best checkpoint becomes the base."""

    rank: int = 4
    alpha: float = 8.0
    dropout: float = 0.0
    target: list[str] = field(default_factory=lambda: ["*"])
    train: list[str] = field(default_factory=lambda: ["head", "head.*"])
    init_from: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    merge: bool = False

    def validate(self) -> None:
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
