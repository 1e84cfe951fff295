"""checkpoints/last.pt (everything needed to continue) and best.pt (weights of the best epoch),
and ``Checkpointer``, which writes both for one run (``fit``'s checkpoint callbacks use it).

Both hold only tensors and plain Python values so they load with ``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dq.checksums import write_recorded
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.errors import first_line
from dq.objectives.base import Objective
from dq.outputs import save_torch
from dq.run_files import BEST_PT, LAST_PT, CorruptRunFile, read_checkpoint


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
    """last.pt, its sha256 recorded in checksums.json (dq.checksums)."""
    write_recorded(run_dir, LAST_PT, lambda hook: save_torch(Path(run_dir) / LAST_PT, state, hook))


def save_best(run_dir: Path, model_state: dict[str, torch.Tensor], epoch: int, monitor: str, value: float) -> None:
    """best.pt, its sha256 recorded in checksums.json (dq.checksums)."""
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
