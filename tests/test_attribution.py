"""Right for the right reasons: the decoy datasets and the attribution penalty."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

import dq
from dq import data, models
from dq.data import decoy
from dq.data.registry import dataset_config
from dq.data_records import Split
from dq.device import seed_everything
from dq.errors import DQUserError
from dq.objectives.attribution import (
    AttributionConfig,
    AttributionMethod,
    AttributionPenalty,
    AttributionTarget,
    build_attribution,
    integrated_gradients,
)
from dq.objectives.registry import build_objective
from dq.rundir.read import read_jsonl
from dq.spec import to_spec
from run_checks import check_run

S = decoy.SWATCH


# --------------------------------------------------------------------------- decoy data
@pytest.fixture(scope="module")
def decoy_mnist() -> tuple[data.Splits, data.Splits]:
    cfg = dataset_config("decoy_mnist", val_fraction=0.1, test_fraction=0.1)
    source = dataset_config("mnist5k", val_fraction=0.1, test_fraction=0.1)
    return data.build(cfg, seed=0), data.build(source, seed=0)


def swatch_corners(split: Split) -> torch.Tensor:
    """The corner (0..3: top-left, top-right, bottom-left, bottom-right) each mask marks,
    checking that the mask is exactly one S×S block in one corner."""
    n, c, h, w = split.x.shape
    mask = split.mask
    assert mask is not None and mask.shape == split.x.shape and mask.dtype == torch.bool  # a byte, not 4, per pixel
    assert torch.equal(mask.sum(dim=(1, 2, 3)), torch.full((n,), c * S * S))
    blocks = {
        0: (slice(0, S), slice(0, S)),
        1: (slice(0, S), slice(w - S, w)),
        2: (slice(h - S, h), slice(0, S)),
        3: (slice(h - S, h), slice(w - S, w)),
    }
    full = torch.stack([mask[:, :, rows, cols].sum(dim=(1, 2, 3)) == c * S * S for rows, cols in blocks.values()], 1)
    assert torch.equal(full.sum(dim=1), torch.ones(n, dtype=torch.long))  # all its mass in one corner
    return full.float().argmax(dim=1)


def swatch_shades(split: Split) -> torch.Tensor:
    """The one grey level inside each example's swatch."""
    values = split.x[split.mask.bool()].view(len(split), -1)
    assert torch.equal(values, values[:, :1].expand_as(values))
    return values[:, 0]


def test_decoy_swatch_sits_in_a_random_corner_and_the_mask_marks_exactly_it(decoy_mnist) -> None:
    splits, source = decoy_mnist
    for part in ("train", "val", "test"):
        split, clean = getattr(splits, part), getattr(source, part)
        corners = swatch_corners(split)
        counts = torch.bincount(corners, minlength=4).float() / len(split)
        assert bool((counts > 0.15).all()), counts  # every corner used, none much favoured
        outside = split.mask == 0
        assert torch.equal(split.x[outside], clean.x[outside])  # nothing else changed
        assert torch.equal(split.y, clean.y)
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0


def test_decoy_shade_encodes_the_label_in_train_and_val_and_is_random_in_test(decoy_mnist) -> None:
    splits, _ = decoy_mnist
    expected = lambda y: torch.from_numpy(decoy.shade(y.numpy()).astype(np.float32))  # noqa: E731
    for part in ("train", "val"):
        split = getattr(splits, part)
        assert torch.equal(swatch_shades(split), expected(split.y))
    test_shades = swatch_shades(splits.test)
    levels = expected(torch.arange(10))
    assert bool(torch.isin(test_shades, levels).all())  # the shade of some class...
    agree = float((test_shades == expected(splits.test.y)).float().mean())
    assert agree < 0.2  # ...but not the true one (chance: 1/10)
    assert len(test_shades.unique()) == 10


def test_decoy_data_is_deterministic_from_the_split_seed_and_restats_the_train_split(decoy_mnist) -> None:
    splits, _ = decoy_mnist
    cfg = dataset_config("decoy_mnist", val_fraction=0.1, test_fraction=0.1)
    again = data.build(cfg, seed=0)
    for part in ("train", "val", "test"):
        a, b = getattr(splits, part), getattr(again, part)
        assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask) and torch.equal(a.y, b.y)
    other = data.build(dataset_config("decoy_mnist", split_seed=1), seed=0)
    assert not torch.equal(other.train.mask[:100], splits.train.mask[:100])
    meta = splits.meta
    assert meta.name == "decoy_mnist" and meta.modality == "image" and meta.valid_range == (0.0, 1.0)
    assert meta.input_mean[0] == pytest.approx(float(splits.train.x.mean()), abs=1e-6)
    assert meta.input_std[0] == pytest.approx(float(splits.train.x.double().std(correction=0)), abs=1e-6)
    limited = data.build(dataset_config("decoy_mnist", limit=8, val_fraction=0.1, test_fraction=0.1), seed=0)
    assert torch.equal(limited.train.mask, splits.train.mask[:8])


def test_decoy_fashion_mnist_is_built_from_fashion_mnist() -> None:
    splits = data.build(dataset_config("decoy_fashion_mnist", limit=300), seed=0)
    assert splits.meta.name == "decoy_fashion_mnist" and splits.meta.class_names[0] == "T-shirt/top"
    for split in (splits.train, splits.val, splits.test):
        swatch_corners(split)
    expected = torch.from_numpy(decoy.shade(splits.train.y.numpy()).astype(np.float32))
    assert torch.equal(swatch_shades(splits.train), expected)


# --------------------------------------------------------------------------- the penalty
def linear_case(n: int = 6, d: int = 5, k: int = 4, seed: int = 0):
    """A linear softmax model, inputs and a random 0/1 mask."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, k).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(torch.randn(k, generator=gen, dtype=torch.float64))
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    mask = (torch.rand(n, d, generator=gen) < 0.5).double()
    y = torch.randint(0, k, (n,), generator=gen)
    return model, Split(x=x, y=y, mask=mask)


def analytic_gradient(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∇ₓ Σ_k log p_k for logits W x + b: Σ_j (1 − K p_j) w_j = Wᵀ(1 − K p)."""
    p = torch.softmax(x @ weight.T + bias, dim=1)
    return (1 - weight.shape[0] * p) @ weight


def test_penalty_is_zero_when_the_mask_is_empty() -> None:
    model, batch = linear_case()
    batch.mask = torch.zeros_like(batch.x)
    term = AttributionPenalty(weight=1.0)
    assert float(term(model, batch, model(batch.x))) == 0.0


def test_input_gradient_penalty_matches_the_analytic_value_of_a_linear_softmax_model() -> None:
    model, batch = linear_case()
    value = AttributionPenalty(weight=1.0)(model, batch, model(batch.x))
    grad = analytic_gradient(model.weight, model.bias, batch.x)
    expected = ((batch.mask * grad) ** 2).sum(dim=1).mean()
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-9)


def test_penalty_gradient_reaches_the_parameters_through_double_backprop() -> None:
    model, batch = linear_case()
    AttributionPenalty(weight=1.0)(model, batch, model(batch.x)).backward()
    weight, bias = model.weight.detach().clone().requires_grad_(), model.bias.detach().clone().requires_grad_()
    expected = ((batch.mask * analytic_gradient(weight, bias, batch.x)) ** 2).sum(dim=1).mean()
    expected.backward()
    assert float(model.weight.grad.abs().sum()) > 0
    torch.testing.assert_close(model.weight.grad, weight.grad)
    torch.testing.assert_close(model.bias.grad, bias.grad)


def test_integrated_gradients_of_a_linear_function_is_input_times_weight() -> None:
    gen = torch.Generator().manual_seed(1)
    w, x = torch.randn(7, generator=gen), torch.randn(3, 7, generator=gen)
    for steps in (1, 4):
        torch.testing.assert_close(integrated_gradients(lambda z: z @ w, x, steps), x * w)


def test_integrated_gradients_penalty_matches_the_riemann_sum_and_completeness() -> None:
    model, batch = linear_case()
    steps = 8
    value = AttributionPenalty(weight=1.0, method=AttributionMethod.integrated_gradients, steps=steps)(
        model, batch, model(batch.x)
    )
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    mean_grad = torch.stack([analytic_gradient(model.weight, model.bias, a * batch.x) for a in alphas]).mean(0)
    expected = ((batch.mask * batch.x * mean_grad) ** 2).sum(dim=1).mean()
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-9)

    # Completeness: the attributions add up to f(x) − f(0) as the Riemann sum gets finer.
    f = lambda z: torch.log_softmax(model(z), dim=1).sum(dim=1)  # noqa: E731
    ig = integrated_gradients(f, batch.x, steps=256)
    torch.testing.assert_close(
        ig.sum(dim=1), (f(batch.x) - f(torch.zeros_like(batch.x))).detach(), rtol=1e-4, atol=1e-4
    )


def test_penalty_leaves_batch_norm_running_statistics_alone() -> None:
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    batch = Split(x=torch.randn(16, 5), y=torch.zeros(16, dtype=torch.long), mask=torch.ones(16, 5))
    logits = model(batch.x)
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    for method in AttributionMethod:
        value = AttributionPenalty(weight=1.0, method=method, steps=4)(model, batch, logits)
        assert float(value.detach()) > 0
    for key, tensor in model[1].state_dict().items():
        assert torch.equal(tensor, before[key]), key
    assert model[1].momentum == 0.1


def test_sensitive_target_penalises_the_sensitive_columns_of_adult() -> None:
    splits = data.build(dataset_config("adult", include_sensitive=True, limit=32), seed=0)
    columns = splits.meta.sensitive_columns
    assert columns
    term = build_attribution(AttributionConfig(weight=1.0, target=AttributionTarget.sensitive), splits.meta)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(splits.train.x.shape[1], 16), nn.Tanh(), nn.Linear(16, 2))
    batch = splits.train
    x = batch.x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(torch.log_softmax(model(x), dim=1).sum(), x)
    expected = (grad[:, list(columns)] ** 2).sum(dim=1).mean()
    assert float(term(model, batch, model(batch.x)).detach()) == pytest.approx(float(expected), rel=1e-5)


def test_a_weight_of_zero_builds_no_term() -> None:
    meta = data.build(dataset_config("decoy_mnist", limit=4), seed=0).meta
    assert build_objective({"attribution": AttributionConfig(weight=0.0)}, meta).term_names == ["task"]
    assert build_objective({"attribution": AttributionConfig(weight=1.0)}, meta).term_names == ["task", "attribution"]


# --------------------------------------------------------------------------- in runs
def quiet_train(cfg, run_dir) -> dict[str, float]:
    return dq.train(cfg, run_dir=run_dir, console=Console(file=io.StringIO()))


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["dataset=mnist5k"], "the decoy datasets have them: dataset=decoy_mnist or decoy_fashion_mnist"),
        (["dataset=adult", "regularizer.attribution.target=sensitive"], "dataset.include_sensitive=true"),
        (["dataset=decoy_mnist", "regularizer.attribution.target=sensitive"], "is for tabular data"),
        (["dataset=reviews", "model=rnn"], "is text"),
    ],
    ids=["no-mask", "sensitive-not-an-input", "sensitive-on-images", "text"],
)
def test_unusable_data_fails_at_build_time_with_one_line(make_cfg, tmp_path, overrides, fragment) -> None:
    cfg = make_cfg("model=mlp", "regularizer=[attribution]", *overrides)
    with pytest.raises(DQUserError) as error:
        quiet_train(cfg, tmp_path / "run")
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def penalty_at_initial_weights(spec, split: Split) -> float:
    """The input-gradient penalty of the run's freshly initialised model (same seed) on
    ``split`` as one batch, in train mode, computed here from its definition."""
    seed_everything(spec.seed)
    model = models.build(spec.model, data.build(spec.dataset, spec.seed).meta).train()
    x = split.x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(model(x), dim=1).sum(), x)
    return float(((split.mask * grad) ** 2).flatten(1).sum(dim=1).mean())


@pytest.mark.parametrize("model", ["mlp", "cnn", "rnn", "attention"])
def test_every_image_model_trains_with_the_penalty(make_cfg, tmp_path, model) -> None:
    """One batch (32 train examples, batch size 32) and no dropout: the logged penalty is
    the penalty of the initial weights, exactly. The attention model keeps its dropout
    (see the xfail below), so its penalty is only checked to be positive. (Dropout with
    the penalty is also trained in the decoy evidence test below.)"""
    exact = model != "attention"
    overrides = ["dataset=decoy_mnist", f"model={model}", "regularizer=[attribution]", "dataset.limit=32"]
    cfg = make_cfg(*overrides, *(["model.dropout=0"] if exact else []))
    metrics = quiet_train(cfg, tmp_path / "run")
    _, splits, spec = check_run(tmp_path / "run", metrics, epochs=1)
    assert len(splits.train) == cfg.trainer.batch_size
    epoch = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(epoch["train/attribution"]) and epoch["train/attribution"] > 0
    if exact:
        assert epoch["train/attribution"] == pytest.approx(penalty_at_initial_weights(spec, splits.train), rel=1e-4)


def test_the_attention_model_without_dropout_trains_with_the_penalty(make_cfg, tmp_path) -> None:
    """Without dropout, torch picks a fused attention kernel that has no double backward;
    the penalty runs under the math kernel, so the logged penalty is the exact one."""
    overrides = ["dataset=decoy_mnist", "model=attention", "regularizer=[attribution]", "dataset.limit=32"]
    cfg = make_cfg(*overrides, "model.dropout=0", "trainer.batch_size=32", "explain.enabled=false")
    quiet_train(cfg, tmp_path / "run")
    spec = to_spec(cfg)
    splits = data.build(spec.dataset, spec.seed)
    logged = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]["train/attribution"]
    assert logged == pytest.approx(penalty_at_initial_weights(spec, splits.train), rel=1e-4)


def test_integrated_gradients_and_sensitive_target_train(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "dataset=decoy_mnist",
        "model=mlp",
        "regularizer=[attribution]",
        "regularizer.attribution.method=integrated_gradients",
    )
    quiet_train(cfg, tmp_path / "ig")
    cfg = make_cfg(
        "dataset=adult",
        "dataset.include_sensitive=true",
        "model=mlp",
        "regularizer=[attribution]",
        "regularizer.attribution.target=sensitive",
    )
    quiet_train(cfg, tmp_path / "sensitive")
    epoch = json.loads((tmp_path / "sensitive" / "metrics.jsonl").read_text().splitlines()[0])
    assert epoch["train/attribution"] > 0


def test_the_rrr_decoy_experiment_composes(make_cfg) -> None:
    cfg = make_cfg("+experiment=rrr_decoy", fast=False)
    assert cfg.dataset.name == "decoy_mnist" and cfg.model.name == "mlp"
    assert cfg.experiment_name == "rrr_decoy" and list(cfg.regularizer) == ["attribution"]
    assert cfg.regularizer.attribution.weight > 0


# --------------------------------------------------------------------------- the evidence
EVIDENCE = ("model=mlp", "trainer.epochs=10", "dataset.limit=null", "trainer.checkpoints=false")


def decoy_evidence(make_cfg, tmp_path, seed: int) -> tuple[float, float, float]:
    """Test accuracy of an MLP on clean mnist5k, on decoy_mnist, and on decoy_mnist with
    the attribution penalty (weight 100)."""
    accuracy = {}
    for name, overrides in {
        "clean": ["dataset=mnist5k"],
        "decoy": ["dataset=decoy_mnist"],
        "rrr": ["dataset=decoy_mnist", "regularizer=[attribution]", "regularizer.attribution.weight=100"],
    }.items():
        cfg = make_cfg(*EVIDENCE, f"seed={seed}", *overrides)
        accuracy[name] = quiet_train(cfg, tmp_path / name)["test/accuracy"]
    return accuracy["clean"], accuracy["decoy"], accuracy["rrr"]


def test_the_penalty_makes_a_decoyed_mlp_nearly_as_good_as_a_clean_one(make_cfg, tmp_path) -> None:
    """Ross et al.'s DecoyMNIST result, small: ~15 s on one CPU thread (seed 0 measured
    clean 0.938, decoy 0.592, penalised 0.930)."""
    clean, decoyed, penalised = decoy_evidence(make_cfg, tmp_path, seed=0)
    assert clean - decoyed >= 0.10, (clean, decoyed)
    assert clean - penalised <= 0.03, (clean, penalised)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_the_decoy_evidence_holds_for_other_seeds(make_cfg, tmp_path, seed) -> None:
    clean, decoyed, penalised = decoy_evidence(make_cfg, tmp_path, seed=seed)
    assert clean - decoyed >= 0.10, (clean, decoyed)
    assert clean - penalised <= 0.03, (clean, penalised)
