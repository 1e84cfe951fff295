"""The fairness penalty (differentiable surrogate) and the counterfactual flip rate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dq import data
from dq.data.registry import dataset_config
from dq.data_records import Batch, DatasetMeta
from dq.errors import DQUserError
from dq.metrics.counterfactual import counterfactual_flip_rate
from dq.objectives.fairness import FairnessConfig, FairnessCriterion, FairnessPenalty, group_gap
from dq.objectives.registry import build_objective

BINARY = DatasetMeta(
    name="toy", modality="tabular", input_shape=(2,), num_classes=2, class_names=("n", "p"), group_names=("a", "b", "c")
)


def test_group_gap_is_largest_minus_smallest_group_mean() -> None:
    values = torch.tensor([[0.9], [0.7], [0.2], [0.4], [0.5]])
    group = torch.tensor([0, 0, 1, 1, 2])
    assert float(group_gap(values, group, 3)) == pytest.approx(0.8 - 0.3)
    assert float(group_gap(values[:2], group[:2], 3)) == 0.0  # one group present


def test_dp_penalty_matches_hand_computation_and_eo_conditions_on_the_label() -> None:
    logits = torch.tensor([[0.0, 2.0], [0.0, 0.0], [0.0, -2.0], [0.0, 1.0]])
    y = torch.tensor([1, 0, 0, 1])
    group = torch.tensor([0, 0, 1, 1])
    p = torch.softmax(logits, 1)[:, 1]
    batch = Batch(x=torch.zeros(4, 2), y=y, group=group)
    dp = FairnessPenalty(1.0, FairnessCriterion.dp, 2, 2)(nn.Identity(), batch, logits)
    assert float(dp) == pytest.approx(abs((p[0] + p[1]) / 2 - (p[2] + p[3]) / 2).item(), rel=1e-6)
    eo = FairnessPenalty(1.0, FairnessCriterion.eo, 2, 2)(nn.Identity(), batch, logits)
    expected = abs(p[1] - p[2]) + abs(p[0] - p[3])  # label 0: rows 1 vs 2; label 1: rows 0 vs 3
    assert float(eo) == pytest.approx(expected.item(), rel=1e-6)


def test_a_gradient_step_on_the_penalty_narrows_the_gap() -> None:
    torch.manual_seed(0)
    logits = torch.randn(32, 2) + torch.tensor([0.0, 1.0]) * torch.arange(32).remainder(2).unsqueeze(1)
    logits.requires_grad_(True)
    batch = Batch(x=torch.zeros(32, 2), y=torch.randint(0, 2, (32,)), group=torch.arange(32).remainder(2))
    term = FairnessPenalty(1.0, FairnessCriterion.dp, 2, 2)
    before = term(nn.Identity(), batch, logits)
    (grad,) = torch.autograd.grad(before, logits)
    after = term(nn.Identity(), batch, logits - 5.0 * grad)
    assert float(after.detach()) < float(before.detach())


def test_weight_zero_builds_no_term_and_the_objective_is_plain_cross_entropy() -> None:
    objective = build_objective({"fairness": FairnessConfig(weight=0.0)}, BINARY)
    assert objective.terms == []
    model = nn.Linear(2, 2)
    batch = Batch(x=torch.randn(5, 2), y=torch.tensor([0, 1, 0, 1, 1]), group=torch.tensor([0, 1, 2, 0, 1]))
    out = objective(model, batch)
    assert torch.equal(out.loss, F.cross_entropy(model(batch.x), batch.y))
    assert set(out.terms) == {"task"}


def test_fairness_needs_groups() -> None:
    meta = DatasetMeta(
        name="digits", modality="image", input_shape=(1, 8, 8), num_classes=10, class_names=tuple("0123456789")
    )
    with pytest.raises(DQUserError, match="regularizer fairness needs data with groups; dataset digits has none"):
        build_objective({"fairness": FairnessConfig()}, meta)


def test_counterfactual_flip_rate_on_a_model_that_reads_only_the_sensitive_columns() -> None:
    splits = data.build(dataset_config("adult", include_sensitive=True, limit=200), seed=0)
    columns = list(splits.meta.sensitive_columns)
    assert len(columns) == 2
    model = nn.Linear(splits.test.x.shape[1], 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1, columns[0]] = 5.0  # class 1 exactly for group 0
    assert counterfactual_flip_rate(model, splits.test, columns, torch.device("cpu")) == 1.0
    with torch.no_grad():
        model.weight.zero_()
        model.weight[1, 0] = 5.0  # a non-sensitive column only
    assert counterfactual_flip_rate(model, splits.test, columns, torch.device("cpu")) == 0.0


def test_runs_with_the_sensitive_input_report_the_flip_rate(make_cfg, tmp_path) -> None:
    import dq

    metrics = dq.train(
        make_cfg(
            "dataset=adult",
            "model=mlp",
            "dataset.include_sensitive=true",
            "regularizer=[fairness]",
            "explain.enabled=false",
        ),
        run_dir=tmp_path / "run",
    )
    # Recomputed from the reloaded model: set the sex one-hot to the other group, count changed predictions.
    run = dq.load_run(tmp_path / "run")
    test, columns = run.splits.test, list(run.splits.meta.sensitive_columns)
    assert len(columns) == 2
    with torch.no_grad():
        before = run.model(test.x).argmax(dim=1)
        swapped = test.x.clone()
        swapped[:, columns] = test.x[:, columns[::-1]]
        after = run.model(swapped).argmax(dim=1)
    assert metrics["test/cf_flip_rate"] == pytest.approx(float((before != after).float().mean()), abs=1e-9)
    without = dq.train(make_cfg("dataset=adult", "model=mlp", "explain.enabled=false"), run_dir=tmp_path / "plain")
    assert "test/cf_flip_rate" not in without


def test_dp_penalty_closes_the_adult_gap_without_collapsing_to_the_majority_class(make_cfg, tmp_path) -> None:
    """Evidence (issue 3): adult, MLP, the fair_adult preset. Unpenalised DP difference ≈ 0.17
    at ≈ 85% accuracy; with the penalty at weight 1, ≤ 0.04 while accuracy stays well above
    the 75.2% majority rate (a constant predictor would be 'fair' and useless)."""
    import dq

    base = ("+experiment=fair_adult", "trainer.progress=false", "trainer.device=cpu", "explain.enabled=false")
    plain = dq.train(make_cfg(*base, "regularizer.fairness.weight=0", fast=False), run_dir=tmp_path / "plain")
    fair = dq.train(make_cfg(*base, "regularizer.fairness.weight=1", fast=False), run_dir=tmp_path / "fair")
    assert plain["test/dp_diff"] >= 0.12 and plain["test/accuracy"] >= 0.83
    assert fair["test/dp_diff"] <= 0.04
    assert fair["test/accuracy"] >= 0.80
