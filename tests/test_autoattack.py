"""AutoAttack as a robust-evaluation choice (eval.robust.attack=autoattack, or its cheap
version apgd): it finds at least what PGD-20 finds, its box maps onto dq's threat model, its
cost is written per example and bounded by eval.robust.limit, each version writes under its
own keys, and what it cannot attack is refused in one line before training."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

import dq
from dq import data, models
from dq.attacks.autoattack import BoxMap, attacks_of, autoattack_refusal, build_autoattack
from dq.config.eval import RobustEvalConfig
from dq.data_records import DatasetMeta, Splits
from dq.device import seed_everything
from dq.errors import DQUserError
from dq.metrics.robustness import check_robust_eval, robust_metrics
from dq.spec import to_spec

CPU = torch.device("cpu")


def trained(make_cfg, *overrides: str, epochs: int = 30, limit: str = "null") -> tuple[nn.Module, Splits]:
    """A model trained with plain full-batch Adam on the train split (about a second)."""
    spec = to_spec(make_cfg(*overrides, f"dataset.limit={limit}", "explain.enabled=false"))
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(0)
    model = models.build(spec.model, splits.meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(splits.train.x), splits.train.y).backward()
        optimizer.step()
    return model.eval(), splits


@pytest.mark.slow
def test_autoattack_finds_at_least_what_pgd_finds_on_digits(make_cfg) -> None:
    """About 30 s on one thread: Square's 5,000 queries on the digits that survive."""
    model, splits = trained(make_cfg, "dataset=digits", "model=mlp", "model.hidden=[32]")
    cfg = RobustEvalConfig(eps=[0.2], attack="autoattack", limit=32)
    metrics = robust_metrics(model, splits.test, splits.meta, cfg, CPU, batch_size=64, seed=0)
    clean = float((model(splits.test.x[:32]).argmax(1) == splits.test.y[:32]).float().mean())
    assert clean > 0.85
    assert metrics["test/autoattack_accuracy@0.2"] <= metrics["test/robust_accuracy@0.2"]
    assert metrics["test/robust_accuracy@0.2"] < clean  # the attack is not vacuous
    assert metrics["time/autoattack_s"] > 0
    assert metrics["time/autoattack_per_example_s"] == pytest.approx(metrics["time/autoattack_s"] / 32)


@pytest.mark.slow
def test_autoattack_on_adult_finds_at_least_what_pgd_finds_with_pgds_group_keys(make_cfg) -> None:
    """About 5–25 s on one thread (Square's 5,000 queries): binary, so APGD-CE, FAB-T, Square."""
    model, splits = trained(make_cfg, "dataset=adult", "model=mlp", "model.hidden=[16]", epochs=20)
    cfg = RobustEvalConfig(eps=[0.3], attack="autoattack", limit=48)
    metrics = robust_metrics(model, splits.test, splits.meta, cfg, CPU, batch_size=64, seed=0, n_boot=50)
    assert "test/autoattack_dp_diff@0.3/ci_low" in metrics  # intervals, as PGD's keys have them
    pgd_keys = {k for k in metrics if "robust" in k}
    assert {k.replace("robust", "autoattack") for k in pgd_keys} == {k for k in metrics if "test/" in k} - pgd_keys
    assert any(k.startswith("test/group_autoattack_accuracy/") for k in metrics)
    assert metrics["test/autoattack_accuracy@0.3"] <= metrics["test/robust_accuracy@0.3"]


def test_the_box_of_adult_never_clips_and_gives_the_one_hot_columns_back(make_cfg) -> None:
    model, splits = trained(make_cfg, "dataset=adult", "model=mlp", "model.hidden=[16]", epochs=1, limit="600")
    # the box: its walls lie beyond x ± eps, so they never clip; one-hot columns come back exactly
    x = splits.test.x[:48]
    box = BoxMap.for_data(model, x, splits.meta, 0.3)
    assert bool((x - 0.3 > box.low).all()) and bool((x + 0.3 < box.low + box.scale).all())
    z = box.to_box(x)  # a square layout for Square's windows
    assert z.shape == (48, 1, box.side, box.side) and box.side**2 >= x.shape[1]
    assert torch.allclose(box.from_box(z), x, atol=1e-5)
    moved = box.from_box((z + (torch.rand_like(z) * 2 - 1) * 0.3 / box.scale).clamp(0, 1))
    continuous = list(splits.meta.continuous_columns)
    one_hot = [c for c in range(x.shape[1]) if c not in continuous]
    assert torch.equal(moved[:, one_hot], x[:, one_hot])
    assert (moved[:, continuous] - x[:, continuous]).abs().max() <= 0.3 + 1e-5
    assert (moved[:, continuous] - x[:, continuous]).abs().max() > 0.2


def test_the_box_of_images_is_their_valid_range() -> None:
    meta = DatasetMeta(
        name="toy", modality="image", input_shape=(1, 4, 4), num_classes=10, class_names=tuple("0123456789"),
        valid_range=(0.0, 1.0),
    )  # fmt: skip
    box = BoxMap.for_data(nn.Flatten(), torch.rand(5, 1, 4, 4), meta, 0.1)
    assert box.scale == 1.0 and float(box.low.abs().max()) == 0.0 and box.fixed is None and box.side == 0


def test_a_series_is_laid_out_as_a_square_for_square_and_comes_back() -> None:
    meta = DatasetMeta(name="toy", modality="series", input_shape=(1, 14), num_classes=2, class_names=("a", "b"))
    x = torch.randn(6, 1, 14, generator=torch.Generator().manual_seed(0)) * 3
    box = BoxMap.for_data(nn.Flatten(), x, meta, 0.2)
    z = box.to_box(x)
    assert z.shape == (6, 1, 4, 4) and float(z[:, :, -1, -2:].abs().max()) == 0.0  # 16 - 14 unused entries
    torch.testing.assert_close(box.from_box(z), x, atol=1e-5, rtol=0)
    assert bool((x - 0.2 > box.low).all()) and bool((x + 0.2 < box.low + box.scale).all())
    assert torch.equal(box(z), box.from_box(z).flatten(1))


def text_meta() -> DatasetMeta:
    return DatasetMeta(name="reviews", modality="text", input_shape=(12,), num_classes=2, class_names=("a", "b"))


def test_refusals_are_one_line() -> None:
    with pytest.raises(DQUserError, match=r"^eval.robust.attack=autoattack does not apply to text \(reviews\)"):
        check_robust_eval(RobustEvalConfig(eps=[0.1], attack="autoattack"), text_meta())
    check_robust_eval(RobustEvalConfig(eps=[0.1], attack="pgd"), text_meta())  # PGD attacks the embeddings
    table = DatasetMeta(
        name="adult", modality="tabular", input_shape=(6,), num_classes=2, class_names=("a", "b"),
        continuous_columns=(0, 1),
    )  # fmt: skip
    assert autoattack_refusal("autoattack", table, [0.1]) is None
    reason = autoattack_refusal("autoattack", table, [0.1, 0.5])
    assert reason is not None and "\n" not in reason and "needs every eps < 0.5; got 0.5" in reason
    with pytest.raises(DQUserError, match=r"^eval.robust.attack=apgd does not apply to text \(reviews\)"):
        check_robust_eval(RobustEvalConfig(eps=[0.1], attack="apgd"), text_meta())


def test_a_refused_run_trains_nothing_and_leaves_no_directory(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("dataset=adult", "model=mlp", "eval.robust.attack=autoattack", "eval.robust.eps=[0.1,0.7]")
    run_dir = tmp_path / "run"
    began = time.perf_counter()
    with pytest.raises(DQUserError, match=r"needs every eps < 0\.5; got 0\.7"):
        dq.train(cfg, run_dir=run_dir, console=Console(quiet=True))
    assert not run_dir.exists()
    assert time.perf_counter() - began < 10


class RowCounter(nn.Module):
    """The model, recording the most rows any one forward pass saw."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.most = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.most = max(self.most, len(x))
        return self.model(x)


@pytest.mark.parametrize("limit", [7, 20])
def test_the_cheap_version_attacks_only_the_limit_under_its_own_keys(make_cfg, limit: int) -> None:
    """eval.robust.attack=apgd (APGD-CE, APGD-T): no pass of either attack sees more than
    eval.robust.limit examples, its keys say apgd (never autoattack), and its seconds per
    example are its seconds over the examples it attacked. A few seconds on one thread."""
    model, splits = trained(make_cfg, "dataset=digits", "model=mlp", "model.hidden=[32]")
    counted = RowCounter(model)
    cfg = RobustEvalConfig(eps=[0.2], attack="apgd", limit=limit)
    metrics = robust_metrics(counted, splits.test, splits.meta, cfg, CPU, batch_size=64, seed=0)
    assert counted.most == limit < len(splits.test)
    assert not any("autoattack" in key for key in metrics)
    assert metrics["time/apgd_per_example_s"] == pytest.approx(metrics["time/apgd_s"] / limit)
    assert metrics["test/apgd_accuracy@0.2"] <= metrics["test/robust_accuracy@0.2"]


def test_each_version_runs_its_documented_attacks() -> None:
    """Standard AutoAttack is pyautoattack's own standard version where APGD-T applies
    (4 classes or more); the cheap one is APGD-CE and APGD-T, or APGD-CE alone on fewer."""
    assert attacks_of("autoattack", 10) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert attacks_of("autoattack", 2) == ["apgd-ce", "fab-t", "square"]
    assert attacks_of("apgd", 10) == ["apgd-ce", "apgd-t"] and attacks_of("apgd", 2) == ["apgd-ce"]
    standard = build_autoattack(nn.Flatten(), "autoattack", "Linf", 0.1, 10, 0, CPU)
    assert standard.version == "standard" and standard.attacks_to_run == attacks_of("autoattack", 10)
    cheap = build_autoattack(nn.Flatten(), "apgd", "Linf", 0.1, 10, 0, CPU)
    assert cheap.version == "custom" and cheap.attacks_to_run == ["apgd-ce", "apgd-t"]
    assert (cheap.apgd.n_restarts, cheap.apgd_targeted.n_target_classes) == (1, 9)  # the standard's settings
