"""Final evaluation of a trained model on the test split: flat ``test/...`` metrics.

Evaluation takes a trained model and a split and never trains; each family of metrics
lives in dq.metrics and is added here only where the data supports it.
"""

from __future__ import annotations

import torch
from torch import nn

from dq import metric_keys as keys
from dq.config.eval import EvalConfig
from dq.config.trainer import TrainerConfig
from dq.data_records import Splits
from dq.device import uses_amp
from dq.inference import predict_logits
from dq.metrics import split_metrics
from dq.metrics.classification import majority_rate, top_class_share
from dq.metrics.counterfactual import counterfactual_flip_rate
from dq.metrics.robustness import robust_metrics


def evaluate(
    model: nn.Module, splits: Splits, *, eval_cfg: EvalConfig, trainer: TrainerConfig, device: torch.device, seed: int
) -> dict[str, float]:
    """accuracy, the test majority rate and the most predicted class's share, loss, ECE, group
    metrics, the counterfactual flip rate where the sensitive attribute is a model input, and PGD robust accuracy at each ``eval.robust.eps``; group
    metrics with bootstrap intervals when ``eval.bootstrap`` > 0 (test split only)."""
    test, meta = splits.test, splits.meta
    amp = uses_amp(device, trainer.amp)
    logits = predict_logits(model, test, device, trainer.eval_batch_size, amp, str(trainer.amp_dtype))
    metrics = split_metrics(logits, test.y, "test", test.group, meta.group_names, eval_cfg.bootstrap, seed)
    # Right after the accuracy (metrics.json, the terminal table): what always answering one
    # class scores, and how close the model comes to doing just that (dq.report.degenerate).
    shares = {
        keys.test("majority_rate"): majority_rate(test.y, meta.num_classes),
        keys.test("top_class_share"): top_class_share(logits),
    }
    metrics = {keys.test(keys.ACCURACY): metrics.pop(keys.test(keys.ACCURACY)), **shares, **metrics}
    if meta.sensitive_columns:
        metrics[keys.test("cf_flip_rate")] = counterfactual_flip_rate(
            model, test, meta.sensitive_columns, device, trainer.eval_batch_size
        )
    metrics.update(
        robust_metrics(model, test, meta, eval_cfg.robust, device, trainer.eval_batch_size, seed, eval_cfg.bootstrap)
    )
    return metrics
