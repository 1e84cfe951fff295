"""Adversarial robustness: the PGD attack (on inputs and, for text, on the embedding output),
the ``adversarial`` objective term (Madry's PGD training and TRADES), robust evaluation and
the experiment presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dq
from dq import data, models
from dq.attacks import PGD, Start, pgd
from dq.config.attack import AttackConfig
from dq.config.eval import RobustEvalConfig
from dq.data_records import Batch, DatasetMeta, Split
from dq.device import seed_everything
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.metrics.robustness import robust_metrics
from dq.modalities import modality_of
from dq.models.attention import AttentionConfig
from dq.models.rnn import RNNConfig
from dq.objectives.adversarial import (
    METHODS,
    TRADES,
    AdversarialConfig,
    AdversarialMethod,
    FastFGSM,
    MadryPGD,
    NoisyFGSM,
)
from dq.objectives.registry import build_objective
from dq.rundir.read import read_jsonl
from dq.spec import to_spec
from run_checks import check_run

CPU = torch.device("cpu")


def meta_for(modality: str, **fields) -> DatasetMeta:
    shapes = {"image": (1, 8, 8), "tabular": (6,), "series": (1, 16), "text": (12,)}
    base = dict(
        name=f"toy_{modality}",
        modality=modality,
        input_shape=shapes[modality],
        num_classes=3,
        class_names=("a", "b", "c"),
        valid_range=(0.0, 1.0) if modality == "image" else None,
    )
    return DatasetMeta(**{**base, **fields})


class ModeRecorder(nn.Module):
    """A small classifier with batch norm and dropout that records its mode at each call."""

    def __init__(self, in_features: int, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(32, classes),
        )
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.net(x)


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((32, 1, 8, 8), generator=generator)
    x[:, :, :2] = torch.randint(0, 2, (32, 1, 2, 8), generator=generator).float()  # pixels at the bounds
    return x, torch.randint(0, 3, (32,), generator=generator)


def ce_sum(y: torch.Tensor):
    return lambda logits: F.cross_entropy(logits, y, reduction="sum")


# --------------------------------------------------------------------------- the attack
@pytest.mark.parametrize(
    ("norm", "eps", "start"), [("linf", 0.1, "uniform"), ("l2", 0.5, "uniform"), ("l2", 0.5, "clean")]
)
def test_pgd_stays_in_the_eps_ball_and_the_valid_range_and_raises_the_loss(images, norm, eps, start) -> None:
    torch.manual_seed(0)
    x, y = images
    model = ModeRecorder(64).eval()
    x_adv = pgd(model, x, ce_sum(y), norm=norm, eps=eps, step_size=2.5 * eps / 10, steps=10, start=start, bounds=(0, 1))

    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(size.max()) > 0.5 * eps  # it did move
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.05


def test_pgd_runs_in_eval_mode_restores_the_mode_and_leaves_no_parameter_gradients(images) -> None:
    x, y = images
    for was_training in (True, False):
        model = ModeRecorder(64).train(was_training)
        pgd(model, x, ce_sum(y), eps=0.1, step_size=0.03, steps=3)
        assert model.modes == [False] * 3
        assert model.training is was_training and all(m.training is was_training for m in model.modules())
        assert all(p.grad is None for p in model.parameters())


def test_pgd_under_no_grad_still_attacks(images) -> None:
    x, y = images
    model = ModeRecorder(64)
    with torch.no_grad():
        x_adv = pgd(model, x, ce_sum(y), eps=0.1, step_size=0.03, steps=3, start=Start.clean)
    assert float((x_adv - x).abs().max()) > 0.05


def test_tabular_attack_moves_only_the_continuous_columns_and_is_not_clipped() -> None:
    meta = meta_for("tabular", continuous_columns=(0, 1, 2))
    torch.manual_seed(0)
    x = torch.cat([3 * torch.randn(16, 3), torch.eye(3)[torch.randint(0, 3, (16,))]], dim=1)  # standardised + one-hot
    y = torch.randint(0, 3, (16,))
    model = ModeRecorder(6)
    mask, bounds = modality_of(meta).attack_mask(meta), modality_of(meta).attack_bounds(meta)
    assert bounds is None and mask.tolist() == [[1, 1, 1, 0, 0, 0]]
    for norm, eps in (("linf", 0.5), ("l2", 1.0)):
        x_adv = pgd(model, x, ce_sum(y), norm=norm, eps=eps, step_size=eps / 4, steps=5, bounds=bounds, mask=mask)
        assert torch.equal(x_adv[:, 3:], x[:, 3:])
        assert float((x_adv[:, :3] - x[:, :3]).abs().max()) > 0.1
        assert float(x_adv[:, :3].abs().max()) > 1.0  # standardised values are not clipped to [0, 1]


def test_attack_domain_per_modality() -> None:
    image, series, tabular = (meta_for(name) for name in ("image", "series", "tabular"))
    assert modality_of(image).attack_bounds(image) == (0.0, 1.0) and modality_of(image).attack_mask(image) is None
    assert modality_of(series).attack_bounds(series) is None and modality_of(series).attack_mask(series) is None
    with pytest.raises(DQUserError, match="continuous columns only"):
        modality_of(tabular).attack_mask(tabular)


# --------------------------------------------------------------------------- the term
def test_weight_zero_builds_no_term_and_the_objective_is_plain_cross_entropy(make_cfg, images) -> None:
    spec = to_spec(make_cfg("dataset=digits", "regularizer=[adversarial]", "regularizer.adversarial.weight=0"))
    objective = build_objective(spec.regularizer, meta_for("image"))
    assert objective.terms == [] and objective.task_weight == 1.0
    x, y = images
    model = ModeRecorder(64)
    torch.manual_seed(1)
    out = objective(model, Batch(x=x, y=y))
    assert len(model.modes) == 1  # one forward pass, no attack
    torch.manual_seed(1)
    assert torch.equal(out.loss, F.cross_entropy(model(x), y))


@pytest.mark.parametrize(
    ("method", "weight", "task_weight"), [("pgd", 1.0, 0.0), ("pgd", 0.3, 0.7), ("trades", 6.0, 1.0)]
)
def test_pgd_mixes_clean_and_adversarial_loss_and_trades_adds_beta_kl(images, method, weight, task_weight) -> None:
    x, y = images
    objective = build_objective(
        {"adversarial": AdversarialConfig(method=method, weight=weight, steps=3)}, meta_for("image")
    )
    assert objective.term_names == ["task", "adversarial"] and objective.task_weight == pytest.approx(task_weight)
    model = ModeRecorder(64).train()
    out = objective(model, Batch(x=x, y=y))
    expected = task_weight * out.terms["task"] + weight * out.terms["adversarial"]
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert model.training  # back in training mode after the attack
    assert float(out.terms["adversarial"]) > (float(out.terms["task"]) if method == "pgd" else 0.0)
    per_example = objective.terms[0].last_example_losses  # what a reweighting term reads
    assert per_example.shape == (32,) and per_example.requires_grad
    assert float(per_example.detach().mean()) == pytest.approx(float(out.terms["adversarial"]), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_method_picks_the_class_and_the_attack_start() -> None:
    assert dict(METHODS) == {
        AdversarialMethod.pgd: MadryPGD,
        AdversarialMethod.trades: TRADES,
        AdversarialMethod.fgsm_rs: FastFGSM,
        AdversarialMethod.n_fgsm: NoisyFGSM,
    }
    madry, trades = (
        build_objective({"adversarial": AdversarialConfig(method=m, weight=0.5)}, meta_for("image")).terms[0]
        for m in ("pgd", "trades")
    )
    assert isinstance(madry, MadryPGD) and madry.task_share == 0.5 and madry.attack.start == Start.uniform
    assert isinstance(trades, TRADES) and trades.task_share == 0.0 and trades.attack.start == Start.normal
    assert MadryPGD(AdversarialConfig(random_start=False), meta_for("image")).attack.start == Start.clean


def test_series_is_attacked_without_clipping() -> None:
    term = build_objective({"adversarial": AdversarialConfig(eps=0.5, steps=2)}, meta_for("series")).terms[0]
    assert isinstance(term, MadryPGD) and term.attack.space.bounds is None
    x = 5 * torch.randn(8, 1, 16)
    delta = term.perturb(ModeRecorder(16), Batch(x=x, y=torch.zeros(8, dtype=torch.long)))
    assert float(delta.abs().max()) == pytest.approx(0.5, abs=1e-5)


def test_a_trades_run_trains_and_logs_the_adversarial_term(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=digits",
        "model=cnn",
        "regularizer=[adversarial]",
        "regularizer.adversarial.method=trades",
        "regularizer.adversarial.weight=6",
        "regularizer.adversarial.steps=3",
        "trainer.epochs=2",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(epochs) == 2
    # KL(clean ‖ adversarial) is 0 only if the attack changed no prediction at all.
    assert all(math.isfinite(e["train/adversarial"]) and e["train/adversarial"] > 0 for e in epochs)
    check_run(tmp_path / "run", metrics, epochs=2)


# --------------------------------------------------------------------------- evaluation
def test_robust_metrics_keys_per_eps_and_per_group(make_cfg) -> None:
    spec = to_spec(make_cfg("dataset=digits", "dataset.group=label", "dataset.limit=120"))
    splits = data.build(spec.dataset, 0)
    model = models.build(spec.model, splits.meta).train()
    cfg = RobustEvalConfig(eps=[0.05, 0.1], steps=3, limit=20)
    metrics = robust_metrics(model, splits.test, splits.meta, cfg, CPU, batch_size=8)
    assert model.training
    present = {splits.meta.group_names[g] for g in splits.test.group[:20].tolist()}
    expected = {f"test/robust_accuracy@{e}" for e in ("0.05", "0.1")} | {
        f"test/group_robust_accuracy/{g}@{e}" for g in present for e in ("0.05", "0.1")
    }
    expected |= {
        f"test/{k}@{e}"
        for k in ("worst_group_robust_accuracy", "robust_dp_diff", "robust_eo_diff")
        for e in ("0.05", "0.1")
    }
    assert set(metrics) == expected
    # Each value counts attacked examples: overall over the 20, per group over its own, and
    # the overall value is the groups' count-weighted mean.
    counts = {g: splits.test.group[:20].tolist().count(i) for i, g in enumerate(splits.meta.group_names)}
    for e in ("0.05", "0.1"):
        overall = metrics[f"test/robust_accuracy@{e}"]
        assert overall * 20 == pytest.approx(round(overall * 20), abs=1e-9)
        correct = sum(metrics[f"test/group_robust_accuracy/{g}@{e}"] * counts[g] for g in present)
        assert correct == pytest.approx(overall * 20, abs=1e-6)
        by_group = [metrics[f"test/group_robust_accuracy/{g}@{e}"] for g in present]
        assert metrics[f"test/worst_group_robust_accuracy@{e}"] == min(by_group)
    assert metrics == robust_metrics(model, splits.test, splits.meta, cfg, CPU, batch_size=8)  # seeded start


def test_worst_group_robust_accuracy_is_the_worst_class_of_a_model_that_always_says_0(make_cfg) -> None:
    spec = to_spec(make_cfg("dataset=digits", "dataset.group=label", "dataset.limit=200"))
    splits = data.build(spec.dataset, 0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.arange(10, 0, -1).float())  # class 0 always wins, whatever the input
    metrics = robust_metrics(model, splits.test, splits.meta, RobustEvalConfig(eps=[0.1], steps=2), CPU, 16)
    assert metrics["test/robust_accuracy@0.1"] == pytest.approx(float((splits.test.y == 0).float().mean()))
    assert metrics["test/group_robust_accuracy/0@0.1"] == 1.0
    assert metrics["test/worst_group_robust_accuracy@0.1"] == 0.0
    without_groups = robust_metrics(
        model, Split(x=splits.test.x, y=splits.test.y), splits.meta, RobustEvalConfig(eps=[0.1], steps=2), CPU, 16
    )
    assert set(without_groups) == {"test/robust_accuracy@0.1"}


def test_robust_metrics_skip_empty_eps_and_tables_without_continuous_columns() -> None:
    image = Split(x=torch.rand(4, 1, 8, 8), y=torch.zeros(4, dtype=torch.long))
    assert robust_metrics(ModeRecorder(64), image, meta_for("image"), RobustEvalConfig(), CPU, 4) == {}
    table = Split(x=torch.rand(4, 6), y=torch.zeros(4, dtype=torch.long))  # one-hot columns only
    assert robust_metrics(ModeRecorder(6), table, meta_for("tabular"), RobustEvalConfig(eps=[0.1]), CPU, 4) == {}


# --------------------------------------------------------------------------- evidence
def clean_and_robust(make_cfg, epochs: int, adversarial: bool, seed: int = 0) -> tuple[float, float]:
    """Clean and PGD-20 (ε = 0.1) test accuracy of a digits CNN after ``epochs`` epochs."""
    overrides = ["dataset=digits", "model=cnn", f"seed={seed}", "dataset.limit=null", "trainer.batch_size=64"]
    overrides += ["optimizer=sgd", "scheduler=cosine", "trainer.early_stopping.enabled=false"]
    if adversarial:
        overrides += ["regularizer=[adversarial]", "regularizer.adversarial.eps=0.1"]
    spec = to_spec(make_cfg(*overrides, f"trainer.epochs={epochs}"))
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(spec.seed)
    model = models.build(spec.model, splits.meta)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    objective = build_objective(spec.regularizer, splits.meta)
    fit(
        model,
        objective,
        splits,
        optimizer=optimizer,
        scheduler=scheduler,
        settings=FitSettings(spec.trainer, CPU, seed),
    )
    clean = float((predict_logits(model, splits.test, CPU).argmax(1) == splits.test.y).float().mean())
    robust = robust_metrics(model, splits.test, splits.meta, RobustEvalConfig(eps=[0.1], steps=20), CPU, 512)
    return clean, robust["test/robust_accuracy@0.1"]


def test_pgd_training_makes_a_digits_cnn_more_robust(make_cfg) -> None:
    natural_clean, natural_robust = clean_and_robust(make_cfg, epochs=4, adversarial=False)
    pgd_clean, pgd_robust = clean_and_robust(make_cfg, epochs=4, adversarial=True)
    assert natural_clean >= 0.9 and pgd_clean >= 0.9
    assert pgd_robust >= natural_robust + 0.1


@pytest.mark.slow
def test_pgd_training_evidence_from_the_issue(make_cfg) -> None:
    """30 epochs at ε = 0.1, seeds 0, 1, 2 (about 75 s on one thread). Measured robust
    accuracy natural → PGD: 59.1 → 89.4, 69.1 → 91.1, 63.5 → 92.8 (clean ≥ 98.9%)."""
    gaps = []
    for seed in (0, 1, 2):
        natural_clean, natural_robust = clean_and_robust(make_cfg, epochs=30, adversarial=False, seed=seed)
        pgd_clean, pgd_robust = clean_and_robust(make_cfg, epochs=30, adversarial=True, seed=seed)
        assert natural_clean >= 0.95 and pgd_clean >= 0.95
        assert pgd_robust >= 0.85
        gaps.append(pgd_robust - natural_robust)
    assert min(gaps) >= 0.15
    assert sum(gaps) / len(gaps) >= 0.25


# --------------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", ["adv_digits", "adv_fmnist", "trades_digits", "robust_fair"])
def test_presets_compose_into_a_valid_run(make_cfg, name) -> None:
    spec = to_spec(make_cfg(f"+experiment={name}"))
    assert spec.experiment_name == name
    assert set(spec.regularizer) == {"adversarial"} and spec.model.name == "cnn"
    assert spec.eval.robust.eps
    if name == "robust_fair":
        assert spec.dataset.name == "fashion_mnist" and spec.dataset.group == "label"


def test_a_robust_preset_selects_the_epoch_of_best_robust_validation_accuracy(make_cfg, tmp_path: Path) -> None:
    """adv_digits monitors val/robust_accuracy (PGD on the first val_limit validation
    examples after each epoch, mode max): the tested epoch is the one where it peaked."""
    cfg = make_cfg(
        "+experiment=adv_digits",
        "trainer.epochs=4",
        "regularizer.adversarial.steps=2",
        "regularizer.adversarial.val_limit=60",
        "eval.robust.limit=32",
        "eval.robust.steps=2",
        "explain.enabled=false",
    )
    assert to_spec(cfg).trainer.early_stopping.monitor == "val/robust_accuracy"
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    check_run(tmp_path / "run", metrics, epochs=4)
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    robust = [epoch["val/robust_accuracy"] for epoch in epochs]
    assert all(abs(value * 60 - round(value * 60)) < 1e-4 for value in robust)  # a count over the first 60
    best = 1 + robust.index(max(robust))  # the first epoch reaching the maximum
    assert metrics["train/selected_epoch"] == metrics["train/best_epoch"] == best, robust
    losses = [epoch["val/loss"] for epoch in epochs]
    assert all(math.isfinite(value) for value in losses)


def test_natural_training_cannot_select_on_robust_accuracy(make_cfg, tmp_path: Path) -> None:
    """Without an adversarial term nothing measures val/robust_accuracy: one line, before training."""
    cfg = make_cfg("+experiment=adv_digits", "regularizer.adversarial.weight=0")
    with pytest.raises(DQUserError) as caught:
        dq.train(cfg, run_dir=tmp_path / "run")
    assert str(caught.value).startswith(
        "trainer.early_stopping.monitor='val/robust_accuracy' is not measured on this data (it needs an active "
        "adversarial term, regularizer.adversarial.weight > 0; for natural training monitor val/loss or "
        "val/accuracy); allowed: val/accuracy, val/loss, val/ece"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("dataset", "model"), [("adult", "mlp"), ("gunpoint", "cnn")])
def test_tabular_and_series_runs_train_with_the_term(make_cfg, tmp_path: Path, dataset, model) -> None:
    cfg = make_cfg(
        f"dataset={dataset}", f"model={model}", "regularizer=[adversarial]", "regularizer.adversarial.steps=2"
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    check_run(tmp_path / "run", metrics, epochs=1)
    epoch = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert math.isfinite(epoch["train/adversarial"]) and epoch["train/adversarial"] > 0


# --------------------------------------------------------------------------- text: the embedding
PAD = 0
TEXT_VOCAB = ("<pad>", "<unk>", *(f"w{i}" for i in range(30)))


def text_batch(n: int = 12, length: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [n, length], right-padded: row i keeps ``1 + i % length`` tokens."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(1, len(TEXT_VOCAB), (n, length), generator=generator)
    keep = 1 + torch.arange(n) % length
    x[torch.arange(length) >= keep[:, None]] = PAD
    return x, torch.randint(0, 3, (n,), generator=generator)


def text_model(name: str) -> nn.Module:
    meta = meta_for("text", input_shape=(10,), vocab=TEXT_VOCAB, pad_index=PAD)
    torch.manual_seed(0)
    cfg = (
        RNNConfig(embedding_dim=16, hidden_size=16)
        if name == "rnn"
        else AttentionConfig(d_model=16, heads=2, ff_dim=32)
    )
    return models.build(cfg, meta)


@pytest.mark.parametrize("model_name", ["rnn", "attention"])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 1.0)])
def test_text_attack_moves_each_token_embedding_within_eps_and_never_the_padding(model_name, norm, eps) -> None:
    model = text_model(model_name).train()
    meta = meta_for("text", input_shape=(10,), vocab=TEXT_VOCAB, pad_index=PAD)
    x, y = text_batch()
    attack = PGD(AttackConfig(norm=norm, eps=eps, steps=5), meta)
    delta = attack(model, x, ce_sum(y), generator=torch.Generator().manual_seed(1))

    assert delta.shape == (12, 10, 16) and not delta.requires_grad
    per_token = delta.abs().amax(dim=-1) if norm == "linf" else delta.norm(dim=-1)
    pad = x == PAD
    assert float(per_token[pad].abs().max()) == 0.0  # padding never moves
    assert bool((per_token[~pad] <= eps + 1e-5).all())  # each token inside its own ball
    assert float(per_token[~pad].min()) > 0.5 * eps  # and every real token did move
    assert not model.embedding._forward_hooks and model.training  # hook removed, mode restored
    with torch.no_grad(), dq.inference.eval_mode(model):
        assert torch.equal(attack.logits(model, x, torch.zeros_like(delta)), model(x))
        assert F.cross_entropy(attack.logits(model, x, delta), y) > F.cross_entropy(model(x), y) + 0.05


def test_text_attack_on_a_model_without_embedding_says_so() -> None:
    meta = meta_for("text", vocab=TEXT_VOCAB, pad_index=PAD)
    with pytest.raises(DQUserError, match=r"model\.embedding") as caught:
        PGD(AttackConfig(), meta)(ModeRecorder(12), torch.ones(2, 12, dtype=torch.long), lambda logits: logits.sum())
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("model", "method"), [("rnn", "pgd"), ("attention", "trades")])
def test_a_text_run_trains_adversarially_and_reports_robust_accuracy(make_cfg, tmp_path: Path, model, method) -> None:
    cfg = make_cfg(
        "dataset=reviews",
        f"model={model}",
        "dataset.limit=96",
        "regularizer=[adversarial]",
        f"regularizer.adversarial.method={method}",
        "regularizer.adversarial.eps=0.1",
        "regularizer.adversarial.steps=2",
        "eval.robust.eps=[0.1,0.5]",
        "eval.robust.steps=3",
        "explain.enabled=false",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    epoch = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert math.isfinite(epoch["train/adversarial"]) and epoch["train/adversarial"] > 0
    groups = {k.split("/")[2].split("@")[0] for k in metrics if k.startswith("test/group_robust_accuracy/")}
    assert groups and groups <= {k.split("/")[2] for k in metrics if k.startswith("test/group_accuracy/")}
    for eps in ("0.1", "0.5"):
        assert {f"test/group_robust_accuracy/{g}@{eps}" for g in groups} <= set(metrics)
    # A stronger attack never helps: robust accuracy at 0.5 ≤ at 0.1 ≤ clean (same seeded start).
    assert metrics["test/robust_accuracy@0.5"] <= metrics["test/robust_accuracy@0.1"] <= metrics["test/accuracy"]
