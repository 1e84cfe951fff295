"""checkpoints/last.pt (everything needed to continue) and best.pt (weights of the best epoch):
written as the loop trains (``Checkpointer``, which fit's checkpoint callbacks use), and put
back into the loop's objects when a run continues (``ResumePoint``, ``restore``).

Both hold only tensors and plain Python values so they load with ``weights_only=True``.
``dq.rundir.resume`` reads them into a ``ResumePoint``; ``restore`` loads that into the
freshly built model, optimizer, scheduler, scaler, early stopping and objective.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dq import metric_keys as keys
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.errors import DQUserError, first_line
from dq.objectives.base import Objective
from dq.rundir.checksums import write_recorded
from dq.rundir.layout import BEST_PT, LAST_PT
from dq.rundir.read import CorruptRunFile, read_checkpoint
from dq.rundir.write import save_torch


def rng_state(batch_generator: torch.Generator) -> dict[str, Any]:
    """Every random state a continued run needs to draw the same numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached_gaussian": cached,
        },
        "torch": torch.get_rng_state(),
        "batch_order": batch_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], batch_generator: torch.Generator) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    batch_generator.set_state(state["batch_order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_last(run_dir: Path, state: dict[str, Any]) -> None:
    """last.pt, its sha256 recorded in checksums.json (dq.rundir.checksums)."""
    write_recorded(run_dir, LAST_PT, lambda hook: save_torch(Path(run_dir) / LAST_PT, state, hook))


def save_best(run_dir: Path, model_state: dict[str, torch.Tensor], epoch: int, monitor: str, value: float) -> None:
    """best.pt, its sha256 recorded in checksums.json (dq.rundir.checksums)."""
    best = {"model": model_state, "epoch": epoch, "monitor": monitor, "value": value}
    write_recorded(run_dir, BEST_PT, lambda hook: save_torch(Path(run_dir) / BEST_PT, best, hook))


def load_best_into(model: nn.Module, run_dir: Path) -> dict[str, Any]:
    """Load best.pt's weights into ``model``; returns the checkpoint's other fields.

    Raises:
        CorruptRunFile: best.pt is missing, broken, or holds weights of another model.
    """
    checkpoint = read_checkpoint(run_dir, BEST_PT, ("model",), map_location=next(model.parameters()).device)
    try:
        model.load_state_dict(checkpoint.pop("model"))
    except (RuntimeError, TypeError, AttributeError) as error:  # wrong keys or shapes, or not a state dict
        raise CorruptRunFile(run_dir, BEST_PT, f"does not fit the run's model ({first_line(str(error))})") from None
    return checkpoint


class Checkpointer:
    """checkpoints/best.pt and last.pt of one run, each written atomically.

    It writes nothing without a run directory or with ``trainer.checkpoints=false``; the
    loop's callbacks (dq.engine.callbacks) call it either way.
    """

    def __init__(self, run_dir: Path | None, enabled: bool, monitor: str) -> None:
        self.run_dir = run_dir
        self.writes = run_dir is not None and enabled
        self.monitor = monitor

    def save_best(self, model_state: dict[str, torch.Tensor], epoch: int, value: float) -> None:
        if self.writes:
            save_best(self.run_dir, model_state, epoch, self.monitor, value)

    def save_last(
        self,
        epoch: int,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        scaler: torch.amp.GradScaler,
        stopper: EarlyStopping,
        generator: torch.Generator,
        objective: Objective | None = None,
        selected_epoch: int | None = None,
        partial: EpochState | None = None,
    ) -> None:
        """Everything a continued run needs: weights, optimizer, scheduler, scaler, stopper,
        RNG, the objective's state, the selected epoch (whose weights are in best.pt) and,
        when stopped inside an epoch, that epoch's ``partial`` state. ``epoch`` counts the
        completed epochs."""
        if not self.writes:
            return
        state = {
            "epoch": epoch,
            "selected_epoch": selected_epoch,
            "objective": objective.state_dict() if objective is not None else {},
            "partial": partial.state_dict() if partial is not None else None,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict(),
            "early_stopping": stopper.state_dict(),
            "rng": rng_state(generator),
        }
        save_last(self.run_dir, state)


@dataclass
class ResumePoint:
    """last.pt and what the run directory says about the epochs it covers."""

    checkpoint: dict[str, Any]
    history: list[dict[str, Any]]  # metrics.jsonl's lines for the completed epochs
    best_state: dict[str, torch.Tensor] | None
    selected_epoch: int | None

    @property
    def epochs_done(self) -> int:
        return int(self.checkpoint["epoch"])

    @property
    def train_time_s(self) -> float:
        return sum(float(record.get(keys.time("epoch_s"), 0.0)) for record in self.history)


def restore(
    point: ResumePoint,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler,
    stopper: EarlyStopping,
    objective: Objective,
    generator: torch.Generator,
    device: torch.device,
) -> EpochState | None:
    """Load ``point`` into the loop's objects (the model already on ``device``); return the
    interrupted epoch's state, or None when last.pt was written at an epoch's end."""
    state = point.checkpoint
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    try:
        objective.load_state_dict(state.get("objective") or {})
    except ValueError as error:
        raise DQUserError(f"cannot resume: last.pt does not fit this objective ({error})") from None
    restore_rng_state(state["rng"], generator)
    partial = state.get("partial")
    return EpochState.from_state_dict(partial, device) if partial is not None else None
