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
        "test/worst_group_accuracy",
        "test/dp_diff",
        "test/eo_diff",
    }
    assert out["test/accuracy"] == pytest.approx(0.75)
    assert out["test/group_accuracy/female"] == pytest.approx(0.5)
    assert out["test/group_accuracy/male"] == pytest.approx(1.0)
    assert out["test/worst_group_accuracy"] == pytest.approx(0.5)  # the smaller of the two
    assert split_metrics(logits, y, "val", group, ("male", "female"))["val/worst_group_accuracy"] == pytest.approx(0.5)
    assert out["test/loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.4, 0.9])), rel=1e-5)
    assert "test/dp_diff" not in split_metrics(logits, y, "test")


def test_group_names_with_a_slash_stay_one_key_segment() -> None:
    out = group_accuracy(np.array([0, 1]), np.array([0, 0]), np.array([0, 1]), ["T-shirt/top", "Trouser"])
    assert out == {"T-shirt-top": 1.0, "Trouser": 0.0}


# --------------------------------------------------------------------------- fairness of robustness
def _robust_gaps_against_fairlearn(
    overrides: tuple[str, ...], eps: float, linear: bool = False
) -> tuple[dict[str, float], dict[str, float], np.ndarray]:
    """dq's ``test/robust_{dp,eo}_diff@eps``, the same gaps from fairlearn directly on the
    very same PGD predictions (same seeded start) of an untrained model (the configured one,
    or a random linear layer, whose predictions vary more), and those predictions."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    from dq import data, models
    from dq.config.eval import RobustEvalConfig
    from dq.device import seed_everything
    from dq.metrics.robustness import robust_metrics, robust_predictions
    from dq.spec import compose, to_spec

    spec = to_spec(compose(["trainer.device=cpu", *overrides]))
    splits = data.build(spec.dataset, 0)
    seed_everything(0)
    model = models.build(spec.model, splits.meta).eval()
    if linear:
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(splits.test.x[0].numel(), splits.meta.num_classes)
        )
    cfg = RobustEvalConfig(eps=[eps], steps=3)
    cpu = torch.device("cpu")
    ours = robust_metrics(model, splits.test, splits.meta, cfg, cpu, batch_size=64, seed=3)
    pred = robust_predictions(model, splits.test, splits.meta, cfg, eps, cpu, 64, seed=3).numpy()
    y, group = splits.test.y.numpy(), splits.test.group.numpy()
    classes = [1] if splits.meta.num_classes == 2 else range(splits.meta.num_classes)
    dp = [demographic_parity_difference(y == c, pred == c, sensitive_features=group) for c in classes]
    eo = [equalized_odds_difference(y == c, pred == c, sensitive_features=group) for c in classes]
    tag = f"{eps:g}"
    return (
        {k: ours[f"test/robust_{k}@{tag}"] for k in ("dp_diff", "eo_diff")},
        {
            "dp_diff": float(np.nanmax(dp)),
            "eo_diff": float(np.nanmax(eo)),
        },
        pred,
    )


def test_robust_gaps_on_adult_by_sex_match_fairlearn_on_the_adversarial_predictions() -> None:
    ours, fairlearn, pred = _robust_gaps_against_fairlearn(("dataset=adult", "model=mlp", "dataset.limit=600"), 0.5)
    assert len(np.unique(pred)) == 2  # both classes predicted: the gaps are not trivially 0
    assert ours == pytest.approx(fairlearn, abs=1e-12)
    assert 0.0 < ours["dp_diff"] <= 1.0 and 0.0 < ours["eo_diff"] <= 1.0


def test_robust_gaps_with_each_class_a_group_are_the_worst_class_one_vs_rest() -> None:
    ours, fairlearn, pred = _robust_gaps_against_fairlearn(
        ("dataset=digits", "dataset.group=label", "dataset.limit=300"), 0.1, linear=True
    )
    assert len(np.unique(pred)) > 2
    assert ours == pytest.approx(fairlearn, abs=1e-12)
    assert ours["dp_diff"] > 0.0
