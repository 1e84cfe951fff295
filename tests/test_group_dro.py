"""Group DRO (``regularizer=[group_dro]``): the weight step and the value on a hand-computed
batch, q carried from batch to batch and through its state, a non-finite batch leaving q
alone, the refusal on data without groups, a tiny run whose last.pt holds the q it
logged, and a run stopped between two batches that resumes to the uninterrupted q."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import dq
from conftest import compose_config
from dq import data, models
from dq.config.validation import ConfigValueError
from dq.data_records import Batch, DatasetMeta
from dq.device import seed_everything
from dq.engine import preemption
from dq.engine.callbacks import FitCallback, FitResult, FitState
from dq.engine.checkpoint import ResumePoint
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer
from dq.errors import DQUserError, RunInterrupted
from dq.objectives.group_dro import GroupDRO, GroupDROConfig, step_weights
from dq.objectives.registry import build_objective
from dq.rundir.read import load_checkpoint, read_jsonl
from dq.rundir.resume import load_resume_point, read_last
from dq.spec import to_spec

META = DatasetMeta(
    name="toy",
    modality="tabular",
    input_shape=(2,),
    num_classes=2,
    class_names=("no", "yes"),
    group_names=("f", "m/x"),
)


def ce(margin: float) -> float:
    """Cross-entropy of two logits whose true class is ahead by ``margin``: log(1 + e^−margin)."""
    return math.log1p(math.exp(-margin))


def test_one_batch_steps_q_by_the_group_losses_and_returns_their_q_weighted_sum() -> None:
    term = GroupDRO(GroupDROConfig(weight=1.0, step_size=0.5), META)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    batch = Batch(x=torch.zeros(4, 2), y=torch.tensor([0, 0, 0, 1]), group=torch.tensor([0, 0, 1, 1]))
    # groups y·2 + a: 0, 0, 1, 3; group 2 (yes, f) is absent, its loss 0
    losses = [(ce(2.0) + ce(0.0)) / 2, ce(1.0), 0.0, ce(1.0)]
    stepped = [0.25 * math.exp(0.5 * loss) for loss in losses]
    q = [w / sum(stepped) for w in stepped]
    value = term(torch.nn.Identity(), batch, logits)
    assert term.q.tolist() == pytest.approx(q)
    assert float(value) == pytest.approx(sum(w * loss for w, loss in zip(q, losses, strict=True)))

    # the next batch starts from that q, not from uniform
    again = [w * math.exp(0.5 * loss) for w, loss in zip(q, losses, strict=True)]
    term(torch.nn.Identity(), batch, logits)
    assert term.q.tolist() == pytest.approx([w / sum(again) for w in again])
    keys = ["group_dro/q/no/f", "group_dro/q/no/m-x", "group_dro/q/yes/f", "group_dro/q/yes/m-x"]
    logged = term.end_epoch(torch.nn.Identity(), None, torch.device("cpu"))  # type: ignore[arg-type]
    assert logged == dict(zip(keys, term.q.tolist(), strict=True))


def test_q_goes_through_its_state_and_a_non_finite_step_leaves_it() -> None:
    q = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert torch.equal(step_weights(q, torch.tensor([1.0, float("nan"), 0.0, 0.0]), 0.01), q)
    term = GroupDRO(GroupDROConfig(), META)
    term.q = q.clone()
    fresh = GroupDRO(GroupDROConfig(), META)
    fresh.load_state_dict(term.state_dict())
    assert torch.equal(fresh.q, q)


# n_g of each (class, group) pair: (no, f) and (yes, m/x) large, (no, m/x) and (yes, f) small
COUNTED = replace(META, train_group_counts=((400, 25), (25, 400)))


def test_q_moves_toward_the_worst_group_and_the_adjustment_favours_the_small_one() -> None:
    # pairs y·2 + a: 0 (no, f, n=400) and 2 (yes, f, n=25) have the same, highest loss;
    # 1 (no, m/x) and 3 (yes, m/x) are fitted well
    logits = torch.tensor([[-1.0, 0.0], [3.0, 0.0], [0.0, -1.0], [0.0, 3.0]])
    batch = Batch(x=torch.zeros(4, 2), y=torch.tensor([0, 0, 1, 1]), group=torch.tensor([0, 1, 0, 1]))
    plain = GroupDRO(GroupDROConfig(step_size=0.5), COUNTED)
    adjusted = GroupDRO(GroupDROConfig(step_size=0.5, adjustment=2.0), COUNTED)
    for _ in range(3):
        value_plain = plain(torch.nn.Identity(), batch, logits)
        value_adjusted = adjusted(torch.nn.Identity(), batch, logits)
    q = plain.q.tolist()
    assert q[0] == pytest.approx(q[2]) and q[0] > 0.25 > q[1] == pytest.approx(q[3])  # toward the worst groups
    qa = adjusted.q.tolist()
    assert qa[2] > q[2] and qa[2] > qa[0]  # + 2/√25 = 0.4 against + 2/√400 = 0.1: the small group gains more
    # one step by hand: ℓ_g + C/√n_g in the update
    first = GroupDRO(GroupDROConfig(step_size=0.5, adjustment=2.0), COUNTED)
    first(torch.nn.Identity(), batch, logits)
    losses = [ce(-1.0), ce(3.0), ce(-1.0), ce(3.0)]
    stepped = [
        0.25 * math.exp(0.5 * (loss + 2.0 / math.sqrt(n))) for loss, n in zip(losses, (400, 25, 25, 400), strict=True)
    ]
    assert first.q.tolist() == pytest.approx([w / sum(stepped) for w in stepped])
    # the value is Σ q_g·ℓ_g with the adjusted q: the adjustment is in the update only
    assert float(value_adjusted) == pytest.approx(sum(w * loss for w, loss in zip(qa, losses, strict=True)))
    assert float(value_plain) == pytest.approx(sum(w * loss for w, loss in zip(q, losses, strict=True)))


def test_adjustment_zero_is_the_term_without_counts_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    with_counts, without = GroupDRO(GroupDROConfig(), COUNTED), GroupDRO(GroupDROConfig(), META)
    for _ in range(3):
        logits = torch.randn(16, 2, generator=generator)
        y, group = torch.randint(0, 2, (16,), generator=generator), torch.randint(0, 2, (16,), generator=generator)
        batch = Batch(x=torch.zeros(16, 2), y=y, group=group)
        assert torch.equal(with_counts(torch.nn.Identity(), batch, logits), without(torch.nn.Identity(), batch, logits))
        assert torch.equal(with_counts.q, without.q)


def test_a_pair_the_training_split_lacks_starts_and_stays_at_zero() -> None:
    term = GroupDRO(GroupDROConfig(step_size=0.5, adjustment=1.0), replace(META, train_group_counts=((30, 0), (0, 30))))
    assert term.q.tolist() == [0.5, 0.0, 0.0, 0.5]
    batch = Batch(x=torch.zeros(2, 2), y=torch.tensor([0, 1]), group=torch.tensor([0, 1]))
    value = term(torch.nn.Identity(), batch, torch.tensor([[0.0, 1.0], [0.0, 2.0]]))
    assert term.q[1] == 0.0 and term.q[2] == 0.0 and term.q[0] > 0.5 and math.isfinite(float(value))


def test_the_adjustment_needs_the_training_counts_and_is_not_negative() -> None:
    with pytest.raises(
        DQUserError, match=r"^regularizer.group_dro.adjustment=1 needs the training split's group sizes"
    ):
        build_objective({"group_dro": GroupDROConfig(adjustment=1.0)}, META)
    assert build_objective({"group_dro": GroupDROConfig(adjustment=1.0)}, COUNTED).term_names == ["task", "group_dro"]
    with pytest.raises(ConfigValueError, match=r"^adjustment must be >= 0"):
        GroupDROConfig(adjustment=-1.0).validate()


def test_it_replaces_the_share_weight_of_the_clean_loss_and_needs_groups() -> None:
    objective = build_objective({"group_dro": GroupDROConfig(weight=0.75)}, META)
    assert objective.task_weight == pytest.approx(0.25) and objective.term_names == ["task", "group_dro"]
    no_groups = DatasetMeta(
        name="digits", modality="image", input_shape=(1, 8, 8), num_classes=2, class_names=("a", "b")
    )
    with pytest.raises(DQUserError, match=r"^regularizer group_dro needs data with groups; dataset digits has none"):
        build_objective({"group_dro": GroupDROConfig()}, no_groups)


def test_a_tiny_run_logs_q_each_epoch_and_keeps_it_in_last_pt(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=adult", "model=mlp", "dataset.limit=200", "regularizer=[group_dro]", "explain.enabled=false",
        "trainer.epochs=2", "trainer.early_stopping.enabled=false",
    )  # fmt: skip
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(epochs) == 2 and all(math.isfinite(epoch["train/group_dro"]) for epoch in epochs)
    q = [{k: v for k, v in epoch.items() if k.startswith("group_dro/q/")} for epoch in epochs]
    assert len(q[0]) == 4 and sum(q[1].values()) == pytest.approx(1.0) and q[0] != q[1]
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last["objective"]["group_dro"]["q"].tolist() == pytest.approx(list(q[1].values()))
    assert "test/accuracy" in metrics


def test_a_colored_mnist_run_with_the_adjustment_reports_the_worst_group_and_stops_on_it(
    make_cfg, tmp_path: Path
) -> None:
    cfg = make_cfg(
        "+experiment=group_dro", "dataset.limit=200", "trainer.epochs=2", "regularizer.group_dro.adjustment=1",
        "trainer.early_stopping.enabled=true", "trainer.select=best", "explain.enabled=false", "eval.bootstrap=0",
    )  # fmt: skip
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    groups = [value for key, value in metrics.items() if key.startswith("test/group_accuracy/")]
    assert len(groups) == 4 and metrics["test/worst_group_accuracy"] == min(groups)
    epochs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    val = [epoch["val/worst_group_accuracy"] for epoch in epochs]
    assert metrics["train/best_epoch"] == 1 + val.index(max(val))  # early stopping's monitor
    q = epochs[-1]
    # groups (label, colour) already fix the class: the pairs of the other class are empty, their q 0
    assert q["group_dro/q/0-4/5-9_red"] == q["group_dro/q/5-9/0-4_red"] == 0.0
    assert q["group_dro/q/0-4/0-4_green"] > 0.0 and q["group_dro/q/5-9/5-9_red"] > 0.0


@pytest.fixture
def no_leftover_stop_request() -> Iterator[None]:
    preemption.clear_stop_request()
    yield
    preemption.clear_stop_request()


class SigtermAt(FitCallback):
    """Sends this process SIGTERM after batch ``batch`` of epoch ``epoch``: a pre-emption between two batches."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_start(self, fit: FitState, state: object) -> None:
        self.epoch = fit.epoch

    def on_batch_end(self, batches_done: int, running_loss: float) -> None:
        if (self.epoch, batches_done) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def fit_adult(run_dir: Path, callbacks: list[FitCallback], resume_from: ResumePoint | None = None) -> FitResult:
    spec = to_spec(compose_config(("dataset=adult", "model=mlp", "dataset.limit=200", "regularizer=[group_dro]",
                                   "regularizer.group_dro.step_size=0.5", "trainer.epochs=2")))  # fmt: skip
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(spec.seed)
    model = models.build(spec.model, splits.meta)
    objective = build_objective(spec.regularizer, splits.meta)
    settings = FitSettings(spec.trainer, torch.device("cpu"), spec.seed, run_dir=run_dir, resume_from=resume_from)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    return fit(model, objective, splits, optimizer=optimizer, scheduler=None, settings=settings, callbacks=callbacks)


def test_a_run_stopped_between_two_batches_resumes_with_its_q(tmp_path: Path, no_leftover_stop_request) -> None:
    whole = fit_adult(tmp_path / "whole", [])
    with pytest.raises(RunInterrupted, match=r"^stopped by SIGTERM in epoch 2, after batch 2 of "):
        fit_adult(tmp_path / "parts", [SigtermAt(epoch=2, batch=2)])
    last = read_last(tmp_path / "parts")
    assert last["partial"]["batches_done"] == 2 and "group_dro" in last["objective"]
    preemption.clear_stop_request()
    resumed = fit_adult(tmp_path / "parts", [], resume_from=load_resume_point(tmp_path / "parts", last))
    without_times = [[(k, v) for k, v in r.items() if not k.startswith("time/")] for r in resumed.history]
    assert without_times == [[(k, v) for k, v in r.items() if not k.startswith("time/")] for r in whole.history]
    q_resumed, q_whole = (read_last(tmp_path / run)["objective"]["group_dro"]["q"] for run in ("parts", "whole"))
    assert torch.equal(q_resumed, q_whole)
