"""Schema of ``conf/scheduler/``: the learning-rate schedule, stepped once per epoch."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dq.config.validation import require


class SchedulerName(StrEnum):
    none = "none"
    cosine = "cosine"
    step = "step"
    cyclic = "cyclic"


@dataclass
class SchedulerConfig:
    """``none`` keeps the rate; ``cosine`` anneals it to ``eta_min`` over the run;
    ``step`` multiplies it by ``gamma`` every ``step_size`` epochs; ``cyclic`` (Smith's
    one cycle, as Wong et al. 2020 train fast adversarial models) rises linearly from 0 to
    the optimizer's lr at fraction ``peak`` of the run and falls linearly back to 0."""

    name: SchedulerName = SchedulerName.none
    step_size: int = 10
    gamma: float = 0.1
    eta_min: float = 0.0
    peak: float = 0.4

    def validate(self) -> None:
        require(self.step_size > 0, "step_size", f"must be > 0, got {self.step_size}")
        require(0.0 < self.gamma <= 1.0, "gamma", f"must be in (0, 1], got {self.gamma}")
        require(self.eta_min >= 0, "eta_min", f"must be >= 0, got {self.eta_min}")
        require(0.0 < self.peak < 1.0, "peak", f"must be in (0, 1), got {self.peak}")
