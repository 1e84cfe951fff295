"""FRL-Reweight (``regularizer=[adversarial,robust_fairness]``): the multiplier step and the
class weights on hand-made errors, the refusal without the adversarial term, the per-batch
value against a hand-computed reweighted loss, the end-of-epoch measurement on a model
whose robust errors are known, and a tiny run's metrics.jsonl."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dq
from dq import data
from dq.data_records import Batch, DatasetMeta
from dq.errors import DQUserError
from dq.objectives.adversarial import AdversarialConfig
from dq.objectives.registry import build_objective
from dq.objectives.robust_fairness import RobustFairness, RobustFairnessConfig, class_weights, update_multipliers
from dq.rundir.read import read_jsonl
from dq.spec import to_spec

CPU = torch.device("cpu")
META = DatasetMeta(
    name="toy",
    modality="image",
    input_shape=(1, 4, 4),
    num_classes=3,
    class_names=("a", "b/c", "d"),
    valid_range=(0.0, 1.0),
)


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --------------------------------------------------------------------------- the update
def test_a_class_above_the_mean_by_more_than_tau_gains_weight_and_the_others_lose_it() -> None:
    # errors 0.5, 0.2, 0.2: mean 0.3, gaps − τ = 0.1, −0.2, −0.2; α = 0.5 → φ = (0.05, 0, 0)
    phi = update_multipliers(f64(0, 0, 0), f64(0.5, 0.2, 0.2), alpha=0.5, tau=0.1, max_total=0.5)
    assert phi.tolist() == pytest.approx([0.05, 0.0, 0.0])
    assert class_weights(phi).tolist() == pytest.approx([1.1, 0.95, 0.95])  # 1 + 3·φ_j − Σφ; mean 1
    # a second epoch with the same errors: φ_0 = 0.10 → w = (1.2, 0.9, 0.9)
    phi = update_multipliers(phi, f64(0.5, 0.2, 0.2), alpha=0.5, tau=0.1, max_total=0.5)
    assert class_weights(phi).tolist() == pytest.approx([1.2, 0.9, 0.9])
    # within tolerance (0.35 − 0.3 < τ) a multiplier shrinks back towards 0, never below
    phi = update_multipliers(f64(0.02, 0, 0), f64(0.35, 0.3, 0.25), alpha=1.0, tau=0.1, max_total=0.5)
    assert phi.tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_multipliers_are_capped_at_max_total_and_an_absent_class_keeps_its_own() -> None:
    # present errors 0.9, 0.2 (class 2 absent: NaN), mean 0.55; gaps − τ: 0.25 and −0.45
    phi = update_multipliers(f64(0.1, 0.0, 0.2), f64(0.9, 0.2, float("nan")), alpha=1.0, tau=0.1, max_total=0.5)
    # before the cap: (0.35, 0, 0.2), sum 0.55 > 0.5 → scaled by 0.5 / 0.55
    assert phi.tolist() == pytest.approx([0.35 * 0.5 / 0.55, 0.0, 0.2 * 0.5 / 0.55])
    weights = class_weights(phi)
    assert float(weights.mean()) == pytest.approx(1.0) and float(weights.min()) >= 0.5


def test_config_refuses_a_cap_that_could_make_a_weight_negative() -> None:
    with pytest.raises(ValueError, match=r"max_total.*must be in \(0, 1\) to keep weights > 0, got 1.5"):
        RobustFairnessConfig(max_total=1.5).validate()


# --------------------------------------------------------------------------- the refusal
@pytest.mark.parametrize("adversarial_weight", [None, 0.0])
def test_without_an_active_adversarial_term_the_objective_refuses_with_one_line(adversarial_weight) -> None:
    regularizers = {"robust_fairness": RobustFairnessConfig()}
    if adversarial_weight is not None:
        regularizers["adversarial"] = AdversarialConfig(weight=adversarial_weight)
    with pytest.raises(DQUserError) as caught:
        build_objective(regularizers, META)
    assert str(caught.value) == (
        "regularizer robust_fairness needs regularizer adversarial in the same run with a nonzero weight, "
        "e.g. regularizer=[adversarial,robust_fairness]"
    )


def test_a_run_selecting_it_alone_is_refused(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(DQUserError, match=r"e\.g\. regularizer=\[adversarial,robust_fairness\]$"):
        dq.train(make_cfg("dataset=digits", "regularizer=[robust_fairness]"), run_dir=tmp_path / "run")


# --------------------------------------------------------------------------- the value
def mlp() -> nn.Module:
    """No dropout or batch norm: train and eval mode compute the same function."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))


@pytest.mark.parametrize(
    ("method", "adv_weight", "strength"), [("pgd", 1.0, 1.0), ("pgd", 0.5, 2.0), ("trades", 6.0, 1.0)]
)
def test_the_batch_value_is_the_hand_computed_reweighted_adversarial_loss(method, adv_weight, strength) -> None:
    adversarial = AdversarialConfig(method=method, weight=adv_weight, eps=0.2, steps=3, random_start=False)
    objective = build_objective(
        {"robust_fairness": RobustFairnessConfig(weight=strength), "adversarial": adversarial}, META
    )
    assert objective.term_names == ["task", "adversarial", "robust_fairness"]  # needed term first
    adv_term, term = objective.terms
    assert isinstance(term, RobustFairness) and term.weight == pytest.approx(strength * adv_weight)
    term.phi = f64(0.3, 0.0, 0.1)  # w = 1 + 3φ − 0.4 = (1.5, 0.6, 0.9)
    w = torch.tensor([1.5, 0.6, 0.9])

    generator = torch.Generator().manual_seed(0)
    x = torch.rand((12, 1, 4, 4), generator=generator)
    y = torch.tensor([0, 1, 2] * 4)
    model = mlp().train()
    out = objective(model, Batch(x=x, y=y))

    # by hand: the attack from the clean point is deterministic; recompute each example's loss
    delta = adv_term.perturb(model, Batch(x=x, y=y))
    clean, adv = model(x), model(x + delta)
    if method == "pgd":
        per_example = F.cross_entropy(adv, y, reduction="none")
    else:
        p = torch.softmax(clean, dim=1)
        per_example = (p * (p.log() - torch.log_softmax(adv, dim=1))).sum(dim=1)
    expected_term = ((w[y] - 1) * per_example).mean()
    assert float(out.terms["robust_fairness"]) == pytest.approx(float(expected_term.detach()), rel=1e-5, abs=1e-7)
    # the adversarial part of the loss is a · Σ (1 + λ(w − 1)) ℓ / N
    task = F.cross_entropy(clean, y)
    task_weight = 1 - adv_weight if method == "pgd" else 1.0
    expected_loss = task_weight * task + adv_weight * ((1 + strength * (w[y] - 1)) * per_example).mean()
    assert float(out.loss.detach()) == pytest.approx(float(expected_loss.detach()), rel=1e-5)
    # and so is its gradient
    (grad,) = torch.autograd.grad(out.loss, model[1].weight)
    (expected_grad,) = torch.autograd.grad(expected_loss, model[1].weight)
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- end of epoch
def test_end_epoch_measures_robust_errors_per_class_and_steps_the_weights(make_cfg) -> None:
    spec = to_spec(make_cfg("dataset=digits", "dataset.limit=400"))
    splits = data.build(spec.dataset, 0)
    meta = splits.meta
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():  # says 0 whatever the input: robust error 0 on class 0, 1 elsewhere
        model[1].weight.zero_()
        model[1].bias.copy_(torch.arange(10, 0, -1).float())
    objective = build_objective(
        {
            "adversarial": AdversarialConfig(eps=0.1, steps=2),
            "robust_fairness": RobustFairnessConfig(alpha=0.05, tau=0.0, max_total=0.5, limit=60),
        },
        meta,
    )
    term = objective.terms[1]
    values = objective.end_epoch(model.train(), splits.val, CPU)
    assert model.training

    present = sorted(set(splits.val.y[:60].tolist()))
    assert 0 in present and len(present) >= 5
    errors = {f"robust_fairness/val_robust_error/{c}": 0.0 if c == 0 else 1.0 for c in present}
    assert {k: v for k, v in values.items() if "/val_robust_error/" in k} == errors
    # mean error (K' classes present) m = (K' − 1)/K'; φ_c = α·(1 − m) = α/K' for c ≠ 0, 0 for class 0
    k_present = len(present)
    phi = [0.0 if c == 0 or c not in present else 0.05 / k_present for c in range(10)]
    total = sum(phi)
    expected = {f"robust_fairness/weight/{c}": 1 + 10 * phi[c] - total for c in range(10)}
    assert values.keys() >= expected.keys()
    for key, value in expected.items():
        assert values[key] == pytest.approx(value)
    assert term.phi.tolist() == pytest.approx(phi)
    assert values["robust_fairness/weight/0"] < 1.0 < values[f"robust_fairness/weight/{present[1]}"]


# --------------------------------------------------------------------------- a run
def test_a_tiny_run_logs_the_term_and_every_class_weight_each_epoch(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=digits",
        "model=cnn",
        "dataset.limit=200",
        "dataset.group=label",
        "regularizer=[adversarial,robust_fairness]",
        "regularizer.adversarial.steps=2",
        "regularizer.robust_fairness.limit=40",
        "eval.robust.eps=[0.1]",
        "eval.robust.steps=2",
        "eval.robust.limit=40",
        "explain.enabled=false",
        "trainer.epochs=2",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(epochs) == 2
    assert epochs[0]["train/robust_fairness"] == 0.0  # every weight is 1 in the first epoch
    assert math.isfinite(epochs[1]["train/robust_fairness"])
    for epoch in epochs:
        weights = [epoch[f"robust_fairness/weight/{c}"] for c in range(10)]
        assert sum(weights) / 10 == pytest.approx(1.0) and min(weights) >= 0.5
        assert any(key.startswith("robust_fairness/val_robust_error/") for key in epoch)
    assert "test/worst_group_robust_accuracy@0.1" in metrics
