"""Accuracy, cross-entropy and calibration of a classifier's logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == y).float().mean())


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.float(), y))


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): |accuracy − confidence| per equal-width confidence bin,
    weighted by the bin's share of examples."""
    probs = torch.softmax(logits.float(), dim=1)
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == y).float()
    edges = torch.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 cannot occur.
    bins = torch.bucketize(confidence, edges[1:-1], right=False)
    ece = torch.zeros(())
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


def majority_rate(y: torch.Tensor, num_classes: int) -> float:
    """The share of the most common true class: the accuracy of always answering it."""
    return float(torch.bincount(y.long().cpu(), minlength=num_classes).max()) / max(len(y), 1)


def top_class_share(logits: torch.Tensor) -> float:
    """The share of the most often predicted class; 1.0 for a constant predictor."""
    counts = torch.bincount(logits.argmax(dim=1).cpu(), minlength=logits.shape[1])
    return float(counts.max()) / max(len(logits), 1)
