"""The compressed model beside the original: ``compress/<metric>`` and ``compress/delta/<metric>``.

Placeholder until wt-compare merges: only the compressed model's test metrics
(``dq.evaluation.evaluate`` on ``gradient_model or compressed``, keys prefixed
``compress/``) and their differences to ``original_metrics``. The full version adds
Hooker's prediction-change shares, explanation movement, size, parameters, nonzeros and
latency, with this same signature.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dq.evaluation import evaluate
from dq.outputs import is_interval_key
from dq.records import Splits

PREFIX = "compress/"
DELTA = "compress/delta/"


def compare(
    original: nn.Module,
    compressed: nn.Module,
    splits: Splits,
    spec: Any,
    device: torch.device,
    *,
    gradient_model: nn.Module | None = None,
    original_metrics: dict | None = None,
) -> dict[str, float]:
    """``compress/<key>`` for each test metric of the compressed model, and
    ``compress/delta/<key>`` (compressed − original) where ``original_metrics`` has the key."""
    del original  # the full comparison reads it (prediction changes, explanation movement)
    judged = gradient_model if gradient_model is not None else compressed
    metrics = evaluate(judged, splits, eval_cfg=spec.eval, trainer=spec.trainer, device=device, seed=spec.seed)
    out = {f"{PREFIX}{key}": value for key, value in metrics.items()}
    for key, value in metrics.items():
        if is_interval_key(key):  # an interval's bound minus another's is no interval
            continue
        before = (original_metrics or {}).get(key)
        if isinstance(before, int | float) and isinstance(value, int | float):
            out[f"{DELTA}{key}"] = value - before
    return out
