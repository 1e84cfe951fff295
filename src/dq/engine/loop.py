"""The training loop: epochs of an ``Objective`` over batches, validation, early stopping
and checkpoints. It knows nothing of which regularizers the objective holds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from dq.config.trainer import TrainerConfig
from dq.device import autocast, uses_amp
from dq.engine import checkpoint
from dq.engine.batching import train_batches
from dq.engine.early_stopping import EarlyStopping
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.metrics import split_metrics
from dq.objectives.base import Objective
from dq.outputs import METRICS_JSONL, append_jsonl
from dq.records import Splits


class ProgressReporter(Protocol):
    """What the loop tells a display: it never waits on one."""

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None: ...
    def advance(self, batches_done: int, running_loss: float) -> None: ...
    def end_epoch(self, record: dict[str, float]) -> None: ...


class SilentProgress:
    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def advance(self, batches_done: int, running_loss: float) -> None:
        pass

    def end_epoch(self, record: dict[str, float]) -> None:
        pass


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # best by the monitored metric
    selected_epoch: int | None = None  # whose weights are in best_state (trainer.select)
    best_state: dict[str, torch.Tensor] | None = None
    train_time_s: float = 0.0
    stopped_early: bool = False


def monitorable_metrics(splits: Splits) -> list[str]:
    names = ["val/accuracy", "val/loss", "val/ece"]
    if splits.meta.has_groups and splits.val.group is not None:
        names += ["val/dp_diff", "val/eo_diff"]
    return names


def check_monitor(trainer: TrainerConfig, splits: Splits) -> None:
    """The early-stopping metric must be one the loop measures on this data."""
    allowed = monitorable_metrics(splits)
    monitor = trainer.early_stopping.monitor
    if monitor not in allowed:
        raise DQUserError(
            f"trainer.early_stopping.monitor={monitor!r} is not measured on this data; allowed: {', '.join(allowed)}"
        )


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    objective: Objective,
    splits: Splits,
    trainer: TrainerConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    seed: int,
    run_dir: Path | None = None,
    progress: ProgressReporter | None = None,
) -> FitResult:
    """Train ``model`` in place and return the history and the best epoch's weights.

    With ``run_dir``, each epoch appends a line to metrics.jsonl and rewrites
    checkpoints/last.pt (and best.pt when the monitored metric improves) atomically.
    """
    progress = progress or SilentProgress()
    es_cfg = trainer.early_stopping
    allowed = monitorable_metrics(splits)
    if es_cfg.monitor not in allowed:
        raise DQUserError(
            f"trainer.early_stopping.monitor={es_cfg.monitor!r} is not measured on this data; allowed: {', '.join(allowed)}"
        )
    stopper = EarlyStopping(es_cfg.monitor, str(es_cfg.mode), es_cfg.patience, es_cfg.min_delta, es_cfg.enabled)

    amp = uses_amp(device, trainer.amp)
    amp_dtype = str(trainer.amp_dtype)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == "float16")
    generator = torch.Generator().manual_seed(seed + 1)
    batches = train_batches(
        splits.train, trainer.batch_size, device, generator, str(trainer.loader), trainer.num_workers
    )
    val = splits.val
    write = run_dir is not None and trainer.checkpoints
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    result = FitResult()
    model.to(device)

    for epoch in range(1, trainer.epochs + 1):
        start = time.perf_counter()
        model.train()
        progress.start_epoch(epoch, trainer.epochs, len(batches))
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=device)
        seen = 0
        refresh_every = max(1, len(batches) // 50)
        for index, batch in enumerate(batches, start=1):
            with autocast(device, amp, amp_dtype):
                out = objective(model, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
            if trainer.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
            scaler.step(optimizer)
            scaler.update()

            n = len(batch)
            seen += n
            for name, value in out.terms.items():
                sums[name] = sums.get(name, torch.zeros((), device=device)) + value.float() * n
            correct += (out.logits.detach().argmax(dim=1) == batch.y).sum()
            if index % refresh_every == 0 or index == len(batches):
                progress.advance(index, float(sums["task"]) / seen)
        train_seconds = time.perf_counter() - start

        record: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        record["train/loss"] = float(sums["task"]) / seen
        record["train/accuracy"] = float(correct) / seen
        for name, total in sums.items():
            if name != "task":
                record[f"train/{name}"] = float(total) / seen
        logits = predict_logits(model, val, device, trainer.eval_batch_size, amp, amp_dtype)
        record.update(split_metrics(logits, val.y, "val", val.group, splits.meta.group_names))
        if scheduler is not None:
            scheduler.step()

        improved = stopper.update(epoch, record[es_cfg.monitor])
        if improved or trainer.select == "last":
            result.selected_epoch, result.best_state = epoch, _cpu_copy(model)
            if write:
                checkpoint.save_best(run_dir, result.best_state, epoch, es_cfg.monitor, record[es_cfg.monitor])
        record["time/train_epoch_s"] = train_seconds
        record["time/epoch_s"] = time.perf_counter() - start
        result.train_time_s += record["time/epoch_s"]
        result.history.append(record)
        if run_dir is not None:
            append_jsonl(Path(run_dir) / METRICS_JSONL, record)
        if write:
            checkpoint.save_last(
                run_dir,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(),
                    "early_stopping": stopper.state_dict(),
                    "rng": checkpoint.rng_state(generator),
                },
            )
        progress.end_epoch(record)
        if stopper.should_stop:
            result.stopped_early = True
            break

    if result.best_state is None:  # every epoch's monitored value was NaN
        result.selected_epoch, result.best_state = len(result.history), _cpu_copy(model)
        if write:
            checkpoint.save_best(run_dir, result.best_state, result.selected_epoch, es_cfg.monitor, float("nan"))
    result.best_epoch = stopper.best_epoch
    return result
