"""Tracks the best validation epoch and decides when to stop."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Best value of ``monitor`` so far and how many epochs passed without improving it.

    The best epoch is tracked whether or not stopping is ``enabled``: it decides which
    weights become checkpoints/best.pt and are evaluated on the test split.
    """

    monitor: str
    mode: str = "max"
    patience: int = 5
    min_delta: float = 0.0
    enabled: bool = True
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch``; True when it is the new best."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.enabled and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
