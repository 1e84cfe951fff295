"""Metric functions against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dq.metrics import expected_calibration_error, split_metrics
from dq.metrics.fairness import fairness_gaps, group_accuracy


def logits_for(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs).log()


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model() -> None:
    # Two examples at confidence 0.5 per bin, one right and one wrong: calibrated.
    calibrated = logits_for([[0.5, 0.5], [0.5, 0.5]])
    assert expected_calibration_error(calibrated, torch.tensor([0, 1])) == pytest.approx(0.0, abs=1e-6)
    # Confidence 0.9 on every example, half right: |0.5 - 0.9| = 0.4.
    overconfident = logits_for([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    y = torch.tensor([0, 1, 1, 0])
    assert expected_calibration_error(overconfident, y) == pytest.approx(0.4, abs=1e-5)


def test_binary_fairness_gaps_match_hand_computation() -> None:
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    group = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    gaps = fairness_gaps(y, pred, group, num_classes=2)
    # Selection rates: group 0 3/4, group 1 1/4.
    assert gaps["dp_diff"] == pytest.approx(0.5)
    # TPR: 1.0 vs 0.5; FPR: 0.5 vs 0.0 → worst case 0.5.
    assert gaps["eo_diff"] == pytest.approx(0.5)
    accuracy = group_accuracy(y, pred, group, ["a", "b"])
    assert accuracy == {"a": pytest.approx(0.75), "b": pytest.approx(0.75)}


def test_multiclass_gap_is_the_worst_class_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    pred = np.array([0, 1, 2, 0, 0, 0])  # group 1 gets class 0 for everything
    group = np.array([0, 0, 0, 1, 1, 1])
    gaps = fairness_gaps(y, pred, group, num_classes=3)
    # Class 0 selection: 1/3 in group 0, 3/3 in group 1.
    assert gaps["dp_diff"] == pytest.approx(2 / 3)


def test_one_group_gives_nan_gaps() -> None:
    gaps = fairness_gaps(np.array([0, 1]), np.array([0, 1]), np.array([0, 0]), num_classes=2)
    assert math.isnan(gaps["dp_diff"]) and math.isnan(gaps["eo_diff"])


def test_split_metrics_keys_follow_the_output_contract() -> None:
    logits = logits_for([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    y = torch.tensor([0, 1, 1, 1])
    group = torch.tensor([0, 0, 1, 1])
    out = split_metrics(logits, y, "test", group, ("male", "female"))
    assert set(out) == {
        "test/accuracy",
        "test/loss",
        "test/ece",
        "test/group_accuracy/male",
        "test/group_accuracy/female",
        "test/dp_diff",
        "test/eo_diff",
    }
    assert out["test/accuracy"] == pytest.approx(0.75)
    assert out["test/group_accuracy/female"] == pytest.approx(0.5)
    assert out["test/loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.4, 0.9])), rel=1e-5)
    assert "test/dp_diff" not in split_metrics(logits, y, "test")


def test_group_names_with_a_slash_stay_one_key_segment() -> None:
    out = group_accuracy(np.array([0, 1]), np.array([0, 0]), np.array([0, 1]), ["T-shirt/top", "Trouser"])
    assert out == {"T-shirt-top": 1.0, "Trouser": 0.0}
