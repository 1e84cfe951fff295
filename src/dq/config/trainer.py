"""Schema of ``conf/trainer/``: the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dq import metric_keys as keys
from dq.config.validation import require

# More torch threads or loader workers than any machine has cores: torch overflows past 2**31
# threads and crashes at exit after 10**6 (measured, torch 2.14).
MAX_THREADS = 512


class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class MonitorMode(StrEnum):
    max = "max"
    min = "min"


class AmpDtype(StrEnum):
    float16 = "float16"
    bfloat16 = "bfloat16"


class EpochSelection(StrEnum):
    best = "best"
    last = "last"


class NonFinitePolicy(StrEnum):
    """What a batch whose loss, a term or a gradient is NaN or infinite does to the run."""

    stop = "stop"
    skip_batch = "skip_batch"


class LoaderKind(StrEnum):
    tensor = "tensor"
    dataloader = "dataloader"


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` (a val/ metric of metrics.jsonl) has not improved for
    ``patience`` epochs; the best epoch is kept as checkpoints/best.pt either way."""

    enabled: bool = True
    monitor: str = keys.val(keys.ACCURACY)
    mode: MonitorMode = MonitorMode.max
    patience: int = 5
    min_delta: float = 0.0

    def validate(self) -> None:
        require(self.monitor.startswith("val/"), "monitor", f"must be a val/ metric, got {self.monitor!r}")
        require(self.patience >= 1, "patience", f"must be >= 1, got {self.patience}")
        require(self.min_delta >= 0, "min_delta", f"must be >= 0, got {self.min_delta}")


@dataclass
class TrainerConfig:
    """The loop. ``amp`` and pinned, non-blocking copies apply on CUDA only;
    ``loader: tensor`` keeps the splits on the device and batches by indexing.
    ``select`` decides which epoch's weights become best.pt and are tested: the best by
    ``early_stopping.monitor``, or the last one (for objectives whose aim is not the
    monitored clean metric, such as fairness or robustness)."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 512
    device: DeviceChoice = DeviceChoice.auto
    amp: bool = True
    amp_dtype: AmpDtype = AmpDtype.bfloat16
    grad_clip: float = 0.0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    select: EpochSelection = EpochSelection.best
    num_threads: int = 1
    loader: LoaderKind = LoaderKind.tensor
    num_workers: int = 0
    checkpoints: bool = True
    progress: bool = True
    nonfinite: NonFinitePolicy = NonFinitePolicy.stop
    devices: int = 1
    compile: bool = False
    channels_last: bool = False

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0 (0 turns it off), got {self.grad_clip}")
        require(
            1 <= self.num_threads <= MAX_THREADS,
            "num_threads",
            f"must be in [1, {MAX_THREADS}], got {self.num_threads}",
        )
        require(
            0 <= self.num_workers <= MAX_THREADS,
            "num_workers",
            f"must be in [0, {MAX_THREADS}], got {self.num_workers}",
        )
        require(1 <= self.devices <= MAX_THREADS, "devices", f"must be in [1, {MAX_THREADS}], got {self.devices}")
