"""Continuing a run from its checkpoints/last.pt, exactly where it stopped.

last.pt is rewritten after every epoch (and, on pre-emption, between two batches) with
everything the loop's future depends on: weights, optimizer, scheduler, loss scaler,
early-stopping state, every random state, the objective's own state (FRL-Reweight's
multipliers), the selected epoch and, mid-epoch, the ``EpochState``. ``read_last`` loads
it (a missing or unreadable file is the user's one-line error), ``load_resume_point``
brings the run directory in line with it (metrics.jsonl cut back to the epochs it covers,
best.pt's weights) and ``restore`` puts it into freshly built objects.

A SIGKILL can land between any two writes of an epoch's end. They happen in this order:
best.pt, the metrics.jsonl line, last.pt; so last.pt never covers an epoch whose line or
best weights are missing, and what is ahead of it (a line, a newer best.pt) is what the
resumed run writes again, identically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dq import metric_keys as keys
from dq.engine.checkpoint import restore_rng_state
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.errors import DQUserError
from dq.objectives.base import Objective
from dq.outputs import (
    BEST_CHECKPOINT,
    CHECKPOINTS,
    LAST_CHECKPOINT,
    METRICS_JSONL,
    checkpoint_dir,
    read_regular,
    write_text,
)
from dq.run_files import RESTORE, CorruptRunFile, read_checkpoint, read_epochs, unreadable

LAST_KEYS = ("epoch", "model", "optimizer", "scheduler", "scaler", "early_stopping", "rng")
# A run whose last.pt is gone or broken is never started afresh in its directory unasked.
START_OVER = "the run cannot continue: remove {run_dir} to start over"


def _read_checkpoint(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint (dq.run_files says what is wrong with a broken one); a broken last.pt is
    never replaced by a fresh start: the line says how to start over."""
    run_dir = path.parent.parent
    remedy = RESTORE if path.name == BEST_CHECKPOINT else START_OVER.format(run_dir=run_dir)
    try:
        return read_checkpoint(run_dir, f"{CHECKPOINTS}/{path.name}", required, remedy=remedy)
    except CorruptRunFile as error:
        raise DQUserError(f"cannot resume: {error}") from None


def read_last(run_dir: Path) -> dict[str, Any]:
    """checkpoints/last.pt of ``run_dir``.

    Raises:
        DQUserError: one line naming the file when it is missing, unreadable or not dq's.
    """
    path = checkpoint_dir(run_dir) / LAST_CHECKPOINT
    if not os.path.lexists(path):  # a pipe, a device or a loop there is named by read_checkpoint
        raise DQUserError(
            f"cannot resume: {path} does not exist (last.pt is written after each epoch unless "
            f"trainer.checkpoints=false); {START_OVER.format(run_dir=run_dir)}"
        )
    return _read_checkpoint(path, LAST_KEYS)


def stopped_early(last: dict[str, Any]) -> bool:
    """Whether the run in last.pt had already been stopped by early stopping."""
    stopper = EarlyStopping(monitor="")
    stopper.load_state_dict(last["early_stopping"])
    return stopper.should_stop


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


def cut_metrics_jsonl(run_dir: Path, epochs: int, *, write: bool = True) -> list[dict[str, Any]]:
    """Keep the first ``epochs`` lines of metrics.jsonl (rewritten atomically; with
    ``write`` False only checked) and return them.

    Lines past them belong to an epoch last.pt does not cover (a kill came between the
    line and last.pt); the resumed run writes them again.
    """
    path = Path(run_dir) / METRICS_JSONL
    try:  # last.pt written inside the first epoch covers no line: then none is needed
        history = read_epochs(run_dir, missing_ok=False, limit=epochs)
    except CorruptRunFile as error:
        raise DQUserError(f"cannot resume: {error}") from None
    if len(history) < epochs:
        raise DQUserError(f"cannot resume: {path} has {len(history)} epoch lines but last.pt is at epoch {epochs}")
    try:  # bounded, and never a pipe or a device, even when no line is needed (epochs == 0)
        lines = read_regular(path).splitlines(keepends=True) if os.path.lexists(path) else []
    except OSError as error:
        raise DQUserError(f"cannot resume: {unreadable(run_dir, METRICS_JSONL, error)}") from None
    kept = lines[:epochs]
    if write and (len(lines) > epochs or (kept and not kept[-1].endswith(b"\n"))):
        write_text(path, "".join(line.decode("utf-8").rstrip("\r\n") + "\n" for line in kept))
    return history


def load_resume_point(run_dir: Path, last: dict[str, Any], *, cut: bool = True) -> ResumePoint:
    """Cut metrics.jsonl back to ``last``'s epochs (unless ``cut`` is False: ``settle``
    does it once the checkpoints are known to fit) and read the selected epoch's weights."""
    history = cut_metrics_jsonl(run_dir, int(last["epoch"]), write=cut)
    path = checkpoint_dir(run_dir) / BEST_CHECKPOINT
    if "selected_epoch" in last:
        selected = last["selected_epoch"]
    else:  # a last.pt written before it recorded the selected epoch: best.pt's is the one
        selected = _read_checkpoint(path, ("model", "epoch"))["epoch"] if os.path.lexists(path) else None
    best_state = None
    if selected is not None:
        if not os.path.lexists(path):
            raise DQUserError(f"cannot resume: {path} does not exist, but last.pt selected epoch {selected}")
        best = _read_checkpoint(path, ("model", "epoch"))
        # A newer best.pt than last.pt: the kill came before last.pt of that epoch was
        # written; the resumed run repeats that epoch and writes the same best.pt again.
        if best["epoch"] != selected and best["epoch"] <= int(last["epoch"]):
            raise DQUserError(f"cannot resume: {path} holds epoch {best['epoch']}, last.pt selected epoch {selected}")
        best_state = best["model"]
    return ResumePoint(checkpoint=last, history=history, best_state=best_state, selected_epoch=selected)


def _misfit(expected: dict[str, torch.Tensor], saved: dict[str, Any]) -> str | None:
    """The first way ``saved`` weights do not fit a model whose state is ``expected``, or None."""
    for name, tensor in expected.items():
        if name not in saved:
            return f"{name} is missing from it"
        shape = getattr(saved[name], "shape", None)
        if shape is not None and tuple(shape) != tuple(tensor.shape):
            return f"{name} is {list(shape)} there, {list(tensor.shape)} in the model"
    extra = sorted(set(saved) - set(expected))
    return f"it has {extra[0]}, which the model has not" if extra else None


def settle(point: ResumePoint, model: nn.Module, run_dir: Path) -> None:
    """Check that last.pt's and best.pt's weights fit the model this run builds, then cut
    metrics.jsonl back to last.pt's epochs: a checkpoint that is not this run's (another
    model's, copied in) is refused before anything in the run directory changes.

    Raises:
        DQUserError: one line naming the file and the first weight that does not fit.
    """
    expected = model.state_dict()
    weights = {LAST_CHECKPOINT: point.checkpoint["model"], BEST_CHECKPOINT: point.best_state}
    for name, state in weights.items():
        problem = _misfit(expected, state) if state is not None else None
        if problem is not None:
            path = checkpoint_dir(run_dir) / name
            raise DQUserError(
                f"cannot resume: {path} does not fit the run's model ({problem}); "
                f"put back the run's own {name}, or remove {run_dir} to start over"
            )
    cut_metrics_jsonl(run_dir, point.epochs_done)


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
