"""Schemas of ``conf/compress/``: how a trained model is made cheaper (``dq-compress RUN_DIR
compress=<choice>``, or ``compress=<choice>`` on ``dq-train`` to compress right after training).

One schema per choice: pruning (global magnitude or structured, then optional fine-tuning
through the run's own objective) and post-training quantisation with torchao.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dq.config.validation import require


class PruneKind(StrEnum):
    """``global_magnitude``: the smallest weights across all layers are zeroed
    (torch.nn.utils.prune, unstructured); ``structured``: whole channels and units are
    removed (torch-pruning, following the dependency graph), so the model gets smaller."""

    global_magnitude = "global_magnitude"
    structured = "structured"


class QuantScheme(StrEnum):
    """torchao's int8 dynamic-activation + int8-weight, int8 weight-only, and static
    post-training int8 calibrated on the training split (CNNs, where torchao covers it on CPU)."""

    int8_dynamic = "int8_dynamic"
    int8_weight_only = "int8_weight_only"
    int8_static = "int8_static"


@dataclass
class PruneConfig:
    """Prune to ``amount`` sparsity (a fraction in (0, 1)); then ``finetune_epochs`` epochs
    of the run's own objective (0: none), with the pruned weights held at zero."""

    method: str = "prune"
    kind: PruneKind = PruneKind.global_magnitude
    amount: float = 0.5
    finetune_epochs: int = 0

    def validate(self) -> None:
        require(0 < self.amount < 1, "amount", f"must be in (0, 1), got {self.amount}")
        require(self.finetune_epochs >= 0, "finetune_epochs", f"must be >= 0, got {self.finetune_epochs}")


@dataclass
class QuantizeConfig:
    """Quantise with ``scheme``; ``calibration_batches`` batches of the training split
    calibrate the static scheme (unused by the dynamic and weight-only ones)."""

    method: str = "quantize"
    scheme: QuantScheme = QuantScheme.int8_dynamic
    calibration_batches: int = 8

    def validate(self) -> None:
        require(self.calibration_batches >= 1, "calibration_batches", f"must be >= 1, got {self.calibration_batches}")


COMPRESS_SCHEMAS: dict[str, type] = {"prune": PruneConfig, "quantize": QuantizeConfig}
