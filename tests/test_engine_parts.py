"""The loop's parts on their own: early stopping, batching, one training epoch, validation,
checkpoints, atomic files, and the objective's per-epoch hook."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dq import data, models
from dq.config.trainer import EarlyStoppingConfig, TrainerConfig
from dq.data.registry import dataset_config
from dq.data_records import Batch, Split, Splits
from dq.engine import checkpoint
from dq.engine.batching import LoaderBatches, TensorBatches
from dq.engine.callbacks import FitCallback, FitState
from dq.engine.checkpoint import Checkpointer
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.engine.loop import FitSettings, fit, train_epoch, validate
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.metrics import accuracy
from dq.models.mlp import MLPConfig
from dq.objectives.base import Objective, Term
from dq.rundir.claim import discard_unstarted
from dq.rundir.read import load_checkpoint, read_jsonl
from dq.rundir.write import atomic_write, write_json

CPU = torch.device("cpu")


def test_early_stopping_tracks_best_and_stops_after_patience() -> None:
    stopper = EarlyStopping("val/accuracy", mode="max", patience=2)
    assert stopper.update(1, 0.5) and stopper.best_epoch == 1
    assert stopper.update(2, 0.6)
    assert not stopper.update(3, 0.6)  # equal is not better
    assert not stopper.should_stop
    assert not stopper.update(4, float("nan"))
    assert stopper.should_stop and stopper.best == 0.6 and stopper.best_epoch == 2
    disabled = EarlyStopping("val/loss", mode="min", patience=1, enabled=False)
    disabled.update(1, 1.0)
    disabled.update(2, 2.0)
    assert not disabled.should_stop and disabled.best == 1.0


def test_tensor_batches_cover_every_example_once_in_seeded_order() -> None:
    split = Split(x=torch.arange(10).float().unsqueeze(1), y=torch.arange(10))
    first = [b.y.tolist() for b in TensorBatches(split, 4, torch.device("cpu"), torch.Generator().manual_seed(3))]
    again = [b.y.tolist() for b in TensorBatches(split, 4, torch.device("cpu"), torch.Generator().manual_seed(3))]
    assert first == again
    assert [len(b) for b in first] == [4, 4, 2]
    order = [i for batch in first for i in batch]
    assert sorted(order) == list(range(10))
    assert order != list(range(10))  # shuffled


def test_loader_batches_carry_the_same_fields() -> None:
    split = Split(x=torch.randn(6, 3), y=torch.arange(6), group=torch.tensor([0, 1, 0, 1, 0, 1]))
    batches = list(LoaderBatches(split, 4, torch.device("cpu"), torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 2]
    for batch in batches:
        assert torch.equal(batch.group, split.group[batch.y])
        assert batch.mask is None


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(11)
    state = checkpoint.rng_state(generator)
    checkpoint.save_last(tmp_path, {"epoch": 1, "rng": state})
    expected = (torch.rand(3), torch.randperm(5, generator=generator))
    loaded = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    checkpoint.restore_rng_state(loaded["rng"], generator)
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.randperm(5, generator=generator), expected[1])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_discard_unstarted_removes_only_directories_without_results(tmp_path: Path) -> None:
    empty = tmp_path / "exp" / "run1"
    (empty / ".hydra").mkdir(parents=True)
    (empty / "cli.log").write_text("")
    discard_unstarted(empty)
    assert not empty.exists() and not (tmp_path / "exp").exists()
    kept = tmp_path / "run2"
    (kept / ".hydra").mkdir(parents=True)
    (kept / "metrics.jsonl").write_text("{}\n")
    discard_unstarted(kept)
    assert (kept / "metrics.jsonl").exists()


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    write_json(tmp_path / "run.json", {"status": "completed"})
    mode = (tmp_path / "run.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def tiny_digits(epochs: int = 2, **trainer: object) -> tuple[Splits, nn.Module, TrainerConfig]:
    splits = data.build(dataset_config("digits", limit=64), seed=0)
    torch.manual_seed(0)
    model = models.build(MLPConfig(hidden=[16], dropout=0.0), splits.meta)  # deterministic forward
    return splits, model, TrainerConfig(epochs=epochs, progress=False, device="cpu", batch_size=16, **trainer)


def test_fit_without_checkpoints_still_logs_epochs_into_a_new_run_dir(tmp_path: Path) -> None:
    splits, model, trainer = tiny_digits(checkpoints=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run_dir = tmp_path / "new" / "run"
    result = fit(
        model,
        Objective(),
        splits,
        optimizer=optimizer,
        scheduler=None,
        settings=FitSettings(trainer, CPU, seed=0, run_dir=run_dir),
    )
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    assert not (run_dir / "checkpoints").exists() and result.best_state is not None


def test_fit_takes_only_the_first_three_arguments_by_position() -> None:
    splits, model, trainer = tiny_digits()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="positional"):
        fit(model, Objective(), splits, trainer, optimizer, None, CPU, 0)  # type: ignore[misc]


def test_train_epoch_with_a_frozen_model_reports_the_training_sets_loss_and_accuracy() -> None:
    """lr 0 keeps the weights, so the size-weighted batch means equal the whole-split values."""
    splits, model, trainer = tiny_digits()
    batches = TensorBatches(splits.train, trainer.batch_size, CPU, torch.Generator().manual_seed(1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    record = train_epoch(
        model,
        Objective(),
        batches,
        trainer=trainer,
        optimizer=optimizer,
        scaler=scaler,
        device=CPU,
    )
    with torch.no_grad():
        logits = model(splits.train.x)
    assert sorted(record) == ["train/accuracy", "train/loss"]
    assert record["train/loss"] == pytest.approx(float(F.cross_entropy(logits, splits.train.y)), rel=1e-5)
    assert record["train/accuracy"] == pytest.approx(accuracy(logits, splits.train.y), abs=1e-6)
    assert model.training


def test_validate_gives_the_val_metrics_of_the_model_as_it_is() -> None:
    splits, model, trainer = tiny_digits()
    metrics = validate(model, splits, trainer=trainer, device=CPU)
    with torch.no_grad():
        logits = model.eval()(splits.val.x)
    assert sorted(metrics) == ["val/accuracy", "val/ece", "val/loss"]
    assert metrics["val/accuracy"] == accuracy(logits, splits.val.y)
    assert metrics["val/loss"] == pytest.approx(float(F.cross_entropy(logits, splits.val.y)), rel=1e-6)


def test_checkpointer_writes_best_and_last_only_when_it_has_a_run_dir_and_is_enabled(tmp_path: Path) -> None:
    _, model, _ = tiny_digits()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    parts = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": None,
        "scaler": torch.amp.GradScaler("cuda", enabled=False),
        "stopper": EarlyStopping("val/loss", mode="min", patience=3),
        "generator": torch.Generator().manual_seed(5),
    }
    for run_dir, enabled in [(None, True), (tmp_path / "off", False)]:
        silent = Checkpointer(run_dir, enabled, "val/loss")
        silent.save_best(model.state_dict(), 1, 0.5)
        silent.save_last(1, **parts)
        assert not silent.writes
    assert not (tmp_path / "off").exists()

    checkpoints = Checkpointer(tmp_path / "on", True, "val/loss")
    checkpoints.save_best(model.state_dict(), 3, 0.25)
    checkpoints.save_last(4, **parts)
    best = load_checkpoint(tmp_path / "on" / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "on" / "checkpoints" / "last.pt")
    assert (best["epoch"], best["monitor"], best["value"]) == (3, "val/loss", 0.25)
    assert last["epoch"] == 4 and last["scheduler"] is None and last["early_stopping"]["patience"] == 3
    for name, tensor in model.state_dict().items():
        assert torch.equal(best["model"][name], tensor) and torch.equal(last["model"][name], tensor)
    assert torch.equal(last["rng"]["batch_order"], torch.Generator().manual_seed(5).get_state())


class LogitPenalty(Term):
    """A real small term: the mean squared logit. Its ``end_epoch`` hook counts its calls and
    measures what it is given: the validation accuracy, the lr and the model's mode."""

    name = "logit_l2"

    def __init__(self, weight: float, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.weight = weight
        self.optimizer = optimizer
        self.calls = 0

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().pow(2).mean()

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        self.calls += 1
        assert model.training and torch.is_grad_enabled()
        val_accuracy = accuracy(predict_logits(model, val, device), val.y)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else float("nan")
        return {"logit_l2/calls": self.calls, "logit_l2/val_accuracy": val_accuracy, "logit_l2/lr": lr}


class PlainPenalty(Term):
    """A term that keeps the default ``end_epoch`` hook, which adds nothing."""

    name = "plain"
    weight = 0.1

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().abs().mean()


def test_end_epoch_hook_runs_once_per_epoch_after_validation_and_before_the_scheduler(tmp_path: Path) -> None:
    splits, model, trainer = tiny_digits(epochs=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    term, dropped = LogitPenalty(0.01, optimizer), LogitPenalty(0.0, optimizer)
    objective = Objective([term, PlainPenalty(), dropped])
    result = fit(
        model,
        objective,
        splits,
        optimizer=optimizer,
        scheduler=scheduler,
        settings=FitSettings(trainer, CPU, seed=0, run_dir=tmp_path),
    )

    assert term.calls == 3 and dropped.calls == 0
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert [line["logit_l2/calls"] for line in lines] == [1.0, 2.0, 3.0]
    assert [line["logit_l2/lr"] for line in lines] == [0.1, 0.05, 0.025] == [line["lr"] for line in lines]
    assert [line["logit_l2/val_accuracy"] for line in lines] == [line["val/accuracy"] for line in lines]
    assert [line["logit_l2/calls"] for line in result.history] == [1.0, 2.0, 3.0]
    assert "train/logit_l2" in lines[0] and "train/plain" in lines[0]


def test_objective_end_epoch_merges_the_hooks_values_and_is_empty_without_hooks() -> None:
    splits, model, _ = tiny_digits()
    assert Objective([PlainPenalty()]).end_epoch(model, splits.val, CPU) == {}
    values = Objective([PlainPenalty(), LogitPenalty(1.0)]).end_epoch(model, splits.val, CPU)
    assert sorted(values) == ["logit_l2/calls", "logit_l2/lr", "logit_l2/val_accuracy"]
    assert values["logit_l2/calls"] == 1.0


class _Recorder(Term):
    """A real term that records the order the objective calls it in."""

    def __init__(self, name: str, calls: list[str], needs: tuple[str, ...] = ()) -> None:
        self.name, self.weight, self.calls, self.needs = name, 1.0, calls, needs
        self.bound: dict[str, object] = {}

    def bind(self, terms: dict[str, object]) -> None:
        self.bound = terms

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return logits.float().pow(2).mean()


def test_a_term_that_needs_another_runs_after_it_and_is_bound_to_it() -> None:
    calls: list[str] = []
    base, needy = _Recorder("base", calls), _Recorder("needy", calls, needs=("base",))
    objective = Objective([needy, base])  # listed first, run second
    model = nn.Linear(3, 2)
    batch = Batch(x=torch.randn(4, 3), y=torch.tensor([0, 1, 0, 1]))
    out = objective(model, batch)
    assert calls == ["base", "needy"] and needy.bound == {"base": base}
    assert objective.term_names == ["task", "base", "needy"] and set(out.terms) == {"task", "base", "needy"}


@pytest.mark.parametrize("present", [False, True])
def test_a_term_whose_need_is_absent_or_weight_zero_is_refused(present: bool) -> None:
    calls: list[str] = []
    terms = [_Recorder("needy", calls, needs=("base",))]
    if present:
        zero = _Recorder("base", calls)
        zero.weight = 0.0  # a weight-0 term is dropped, so it cannot serve
        terms.append(zero)
    with pytest.raises(
        DQUserError, match=r"^regularizer needy needs regularizer base in the same run .*regularizer=\[base,needy\]$"
    ):
        Objective(terms)


class _Counter(Term):
    """A real stateful term: it counts its epochs and gives the count as its state."""

    name, weight = "counter", 1.0

    def __init__(self) -> None:
        self.epochs = 0

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().mean()

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        self.epochs += 1
        return {}

    def state_dict(self) -> dict[str, int]:
        return {"epochs": self.epochs}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epochs = int(state["epochs"])


def test_a_term_keeps_the_default_hooks_it_does_not_override_and_only_stateful_terms_are_saved() -> None:
    splits, model, _ = tiny_digits()
    plain, counter = PlainPenalty(), _Counter()
    objective = Objective([plain, counter])
    assert (plain.task_share, plain.val_metrics, plain.needs, plain.teacher_dir) == (0.0, (), (), None)
    assert plain.stop_request() is None and plain.state_dict() is None and plain.last_example_losses is None
    assert objective.task_weight == 1.0 and objective.val_metrics() == [] and objective.stop_request() is None
    objective.end_epoch(model, splits.val, CPU)
    assert objective.state_dict() == {"counter": {"epochs": 1}}  # the stateless term has no entry
    again = Objective([PlainPenalty(), _Counter()])
    again.load_state_dict({"counter": {"epochs": 1}})
    assert again.terms[1].epochs == 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"stateful terms are \['counter'\]"):
        again.load_state_dict({"plain": {}, "counter": {"epochs": 1}})


class _NeverMeasured(Term):
    """A real term whose validation metric is never measured (NaN every epoch); it records
    the last epoch ``start_fit`` announced."""

    name, weight, val_metrics = "never", 0.1, ("val/never",)

    def __init__(self) -> None:
        self.announced: int | None = None

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().abs().mean()

    def start_fit(self, epochs: int) -> None:
        self.announced = epochs

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        return {"val/never": math.nan}


def test_fit_announces_its_last_epoch_and_keeps_the_last_when_the_monitor_is_never_measured() -> None:
    """start_fit learns trainer.epochs before training; a monitored metric that is NaN in
    every epoch selects nothing, so the last epoch's weights are kept and no best is named."""
    splits, model, trainer = tiny_digits(epochs=2, early_stopping=EarlyStoppingConfig(monitor="val/never"))
    term = _NeverMeasured()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = fit(
        model,
        Objective([term]),
        splits,
        optimizer=optimizer,
        scheduler=None,
        settings=FitSettings(trainer, CPU, seed=0),
    )
    assert term.announced == 2
    assert result.selected_epoch == 2 and result.best_epoch is None
    assert all(torch.equal(result.best_state[k], v) for k, v in model.state_dict().items())


def test_the_objective_takes_only_terms() -> None:
    with pytest.raises(TypeError, match=r"^_Plain is not a dq\.objectives\.base\.Term$"):
        Objective([_Plain()])  # type: ignore[list-item]


class _Plain:
    """Shaped like a term, but not one: the objective refuses it before any batch."""

    name, weight = "plain", 1.0

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().mean()


class _Trace(FitCallback):
    """A real callback that notes each hook it is called at, and asks to stop after ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[str] = []
        self.stop_after = stop_after
        self.jsonl_lines_at_end: list[int] = []

    def on_fit_start(self, fit: FitState) -> None:
        self.calls.append("fit_start")

    def on_epoch_start(self, fit: FitState, state: EpochState) -> None:
        self.calls.append(f"epoch_start {fit.epoch}")

    def on_batch_end(self, batches_done: int, running_loss: float) -> None:
        self.calls.append(f"batch {batches_done}")

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        self.calls.append(f"epoch_end {fit.epoch}")
        assert fit.result.history[-1] is record and record["epoch"] == fit.epoch
        self.jsonl_lines_at_end.append(len(read_jsonl(fit.checkpoints.run_dir / "metrics.jsonl")))

    def should_stop(self, fit: FitState) -> bool:
        return self.stop_after is not None and fit.epoch >= self.stop_after

    def on_fit_end(self, fit: FitState) -> None:
        self.calls.append("fit_end")


def test_fit_calls_each_callback_hook_in_order_after_its_own_writes(tmp_path: Path) -> None:
    splits, model, trainer = tiny_digits(epochs=2)
    batches = [f"batch {i}" for i in range(1, math.ceil(len(splits.train) / trainer.batch_size) + 1)]
    assert len(batches) > 1
    trace = _Trace()
    settings = FitSettings(trainer, CPU, seed=0, run_dir=tmp_path)
    fit(model, Objective(), splits, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
        settings=settings, callbacks=[trace])  # fmt: skip
    assert trace.calls == [
        "fit_start",
        *("epoch_start 1", *batches, "epoch_end 1"),
        *("epoch_start 2", *batches, "epoch_end 2"),
        "fit_end",
    ]
    assert trace.jsonl_lines_at_end == [1, 2]  # the epoch's line is written before the caller's callbacks


def test_a_callback_that_asks_to_stop_ends_the_fit_after_that_epoch(tmp_path: Path) -> None:
    splits, model, trainer = tiny_digits(epochs=4)
    settings = FitSettings(trainer, CPU, seed=0, run_dir=tmp_path)
    result = fit(model, Objective(), splits, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
                 settings=settings, callbacks=[_Trace(stop_after=2)])  # fmt: skip
    assert [r["epoch"] for r in result.history] == [1, 2] and result.stopped_early
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and result.selected_epoch in (1, 2)
