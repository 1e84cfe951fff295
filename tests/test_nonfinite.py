"""trainer.nonfinite: a NaN or infinite loss, term or gradient is caught in its batch.

``stop`` fails the run with one line naming the epoch, the batch and the culprit, before
the optimizer steps on that batch, and leaves the last good checkpoints as they were;
``skip_batch`` drops such a batch and counts it in metrics.jsonl. Tiny digits runs, in
process; the non-finite values come from a real overflow (SGD at lr 1e30), a NaN planted
in one training example, or a term whose value is finite but whose gradient is NaN
(the square root at 0).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from dq import data, models
from dq.config.trainer import TrainerConfig
from dq.data.registry import dataset_config
from dq.data_records import Batch, Splits
from dq.engine.batching import TensorBatches
from dq.engine.callbacks import FitCallback, FitState
from dq.engine.epoch_state import EpochState
from dq.engine.loop import FitSettings, fit, train_epoch
from dq.engine.nonfinite import ADVICE, BatchGuard
from dq.errors import TrainingDiverged
from dq.models.mlp import MLPConfig
from dq.objectives.base import Objective, ObjectiveOutput, Term
from dq.rundir.read import read_jsonl

CPU = torch.device("cpu")


def tiny(batch_size: int, epochs: int = 3, **trainer: object) -> tuple[Splits, nn.Module, TrainerConfig]:
    """64 digits for training; a deterministic MLP whose parameters are body.1.*, head.*."""
    splits = data.build(dataset_config("digits", limit=64), seed=0)
    torch.manual_seed(0)
    model = models.build(MLPConfig(hidden=[16], dropout=0.0), splits.meta)
    config = TrainerConfig(epochs=epochs, progress=False, device="cpu", batch_size=batch_size, **trainer)
    config.early_stopping.enabled = False
    return splits, model, config


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


class NaNGradient(Term):
    """A term whose value is 0 and whose gradient is NaN: d sqrt(u)/du = inf at u = 0,
    times du/dw = 0 for the first layer's weights."""

    name, weight = "planted", 1.0

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        first = next(model.parameters())
        return torch.sqrt((first * 0.0).sum())


def test_an_overflow_stops_in_its_batch_before_the_step_and_keeps_the_last_checkpoints(tmp_path: Path) -> None:
    """SGD at lr 1e30, one batch per epoch: epoch 1 steps on finite values, its step makes
    the weights overflow, and epoch 2's first batch has a NaN loss."""
    splits, model, trainer = tiny(batch_size=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e30)
    run_dir = tmp_path / "run"
    saved: dict[str, bytes] = {}

    class AfterEpoch(FitCallback):
        def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
            saved.update({p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()})

    with pytest.raises(TrainingDiverged) as caught:
        fit(
            model, Objective(), splits, optimizer=optimizer, scheduler=None,
            settings=FitSettings(trainer, CPU, seed=0, run_dir=run_dir), callbacks=[AfterEpoch()],
        )  # fmt: skip
    assert str(caught.value) == f"epoch 2, batch 1 of 1: training loss term 'task' is nan; {ADVICE}"
    assert sorted(saved) == ["best.pt", "last.pt"]
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == saved  # byte for byte
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1]
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    # No step on the bad batch: the weights are still epoch 1's, as last.pt holds them.
    assert all(torch.equal(value, last["model"][name]) for name, value in model.state_dict().items())


def test_a_gradient_only_nan_is_named_as_that_parameters_gradient() -> None:
    splits, model, trainer = tiny(batch_size=16)
    before = weights(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = TensorBatches(splits.train, trainer.batch_size, CPU, torch.Generator().manual_seed(1))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    run = dict(trainer=trainer, optimizer=optimizer, scaler=scaler, device=CPU, epoch=3)
    with pytest.raises(TrainingDiverged) as caught:
        train_epoch(model, Objective([NaNGradient()]), batches, **run)
    line = f"epoch 3, batch 1 of 4: the gradient of parameter 'body.1.weight' is not finite (nan); {ADVICE}"
    assert str(caught.value) == line
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())

    # skip_batch: every batch is skipped, nothing is learnt, and the epoch says so in one line.
    skipping = replace(trainer, nonfinite="skip_batch")
    with pytest.raises(TrainingDiverged, match=r"^epoch 3: all 4 batches had a non-finite loss, term or gradient"):
        train_epoch(model, Objective([NaNGradient()]), batches, **{**run, "trainer": skipping})
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_skip_batch_drops_the_bad_batch_counts_it_and_the_run_completes(tmp_path: Path) -> None:
    """One NaN pixel in one training example: one of the four batches of each epoch."""
    splits, model, trainer = tiny(batch_size=16, epochs=2, nonfinite="skip_batch")
    splits.train.x[5, ..., 0] = math.nan
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run_dir = tmp_path / "run"
    result = fit(
        model, Objective(), splits, optimizer=optimizer, scheduler=None,
        settings=FitSettings(trainer, CPU, seed=0, run_dir=run_dir),
    )  # fmt: skip
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [(r["epoch"], r["train/skipped_batches"]) for r in lines] == [(1, 1), (2, 1)]
    assert [r["train/skipped_batches"] for r in result.history] == [1, 1]
    assert all(math.isfinite(r["train/loss"]) and math.isfinite(r["val/accuracy"]) for r in lines)
    assert all(bool(torch.isfinite(value).all()) for value in model.state_dict().values())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    # The same data under the default policy stops in the first epoch, at that batch.
    splits2, model2, stopping = tiny(batch_size=16, epochs=2)
    splits2.train.x[5, ..., 0] = math.nan
    with pytest.raises(TrainingDiverged, match=r"^epoch 1, batch \d of 4: training loss term 'task' is nan; "):
        fit(
            model2, Objective(), splits2, optimizer=torch.optim.SGD(model2.parameters(), lr=0.1),
            scheduler=None, settings=FitSettings(stopping, CPU, seed=0),
        )  # fmt: skip


def test_large_finite_gradients_pass_and_a_single_inf_does_not() -> None:
    """1e30 everywhere is finite: its 2-norm overflows float32, and the element-by-element
    look that follows finds no culprit, so the batch is stepped on."""
    model = nn.Linear(4, 3)
    guard = BatchGuard(model, gradients=True)
    out = ObjectiveOutput(loss=torch.tensor(1.0), terms={"task": torch.tensor(1.0)}, logits=torch.zeros(1, 3))
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e30)
    assert guard.problem(out) is None
    model.bias.grad[1] = -math.inf
    assert guard.problem(out) == "the gradient of parameter 'bias' is not finite (inf)"
    assert BatchGuard(model, gradients=False).problem(out) is None  # a float16 scaler's business
    heavy = ObjectiveOutput(loss=torch.tensor(math.inf), terms={"task": torch.tensor(1.0)}, logits=torch.zeros(1, 3))
    assert guard.problem(heavy).startswith("the total training loss is inf while every term is finite")


def test_a_partial_epochs_skip_count_survives_last_pt() -> None:
    state = EpochState.begin(torch.Generator().manual_seed(0), CPU)
    state.skip()
    state.add({"task": torch.tensor(2.0)}, torch.tensor(3), 4)
    again = EpochState.from_state_dict(state.state_dict(), CPU)
    assert (again.batches_done, again.skipped, again.seen) == (2, 1, 4)
    assert again.record() == {"train/loss": 2.0, "train/accuracy": 0.75}
    empty = EpochState.begin(torch.Generator().manual_seed(0), CPU)
    empty.skip()
    assert math.isnan(empty.running_loss()) and math.isnan(empty.record()["train/loss"])
