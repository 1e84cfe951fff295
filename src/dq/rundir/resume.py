"""Continuing a run in its directory: whether, from where, and with which config.

``dq-train resume=<run>`` (and the same sweep command again, for an interrupted job)
continues a run exactly where it stopped. What the run directory says is read here, before
anything is built:

- ``saved_config``: the config the run was started with (``dq.rundir.resume_config`` checks
  the command line against it: only ``trainer.epochs`` may grow);
- ``resume_point``: whether anything is left to train and from where: a ``ResumePoint``
  (checkpoints/last.pt, the metrics.jsonl lines it covers, best.pt's weights), or
  ``FROM_START`` for a run stopped before its first checkpoint;
- ``settle``: once the model is built, last.pt's and best.pt's weights must fit it; only
  then is metrics.jsonl cut back to last.pt's epochs.

``dq.engine.checkpoint.restore`` then puts the point into the freshly built loop objects.

last.pt is rewritten after every epoch (and, on pre-emption, between two batches) with
everything the loop's future depends on: weights, optimizer, scheduler, loss scaler,
early-stopping state, every random state, the objective's own state (FRL-Reweight's
multipliers), the selected epoch and, mid-epoch, the ``EpochState``. A missing or
unreadable last.pt is the user's one-line error.

A SIGKILL can land between any two writes of an epoch's end. They happen in this order:
best.pt, the metrics.jsonl line, last.pt; so last.pt never covers an epoch whose line or
best weights are missing, and what is ahead of it (a line, a newer best.pt) is what the
resumed run writes again, identically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from dq.engine.checkpoint import ResumePoint
from dq.engine.early_stopping import EarlyStopping
from dq.engine.optim import EPOCH_SHAPED_SCHEDULERS
from dq.errors import DQUserError
from dq.rundir.layout import (
    BEST_CHECKPOINT,
    CHECKPOINTS,
    HYDRA_DIR,
    HYDRA_YAML,
    LAST_CHECKPOINT,
    METRICS_JSONL,
    RUN_JSON,
    checkpoint_dir,
)
from dq.rundir.read import (
    RESTORE,
    CorruptRunFile,
    not_a_directory,
    read_checkpoint,
    read_config,
    read_epochs,
    read_regular,
    read_run_json,
    read_yaml,
    unreadable,
)
from dq.rundir.resume_config import config_conflict, saved_values_conflict
from dq.rundir.write import write_text

# What last.pt must hold (dq.engine.loop writes it after each epoch and on pre-emption).
LAST_KEYS = ("epoch", "model", "optimizer", "scheduler", "scaler", "early_stopping", "rng")
# A run whose last.pt is gone or broken is never started afresh in its directory unasked.
START_OVER = "the run cannot continue: remove {run_dir} to start over"


class FromStart:
    """``resume_point``'s answer for a run stopped before its first checkpoint: train it
    from the beginning, in its directory (nothing it did is lost)."""


FROM_START = FromStart()


def _read_checkpoint(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A checkpoint (dq.rundir.read says what is wrong with a broken one); a broken last.pt is
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


def stopped_before_first_checkpoint(run_dir: Path) -> bool:
    """No last.pt and no epoch line: the run stopped (a signal, a kill) inside its first
    epoch or before it, so starting it over loses nothing. A run with epoch lines but no
    last.pt (``trainer.checkpoints=false``, or a deleted file) lost them: ``read_last`` says so."""
    if (run_dir / CHECKPOINTS / LAST_CHECKPOINT).exists():
        return False
    try:
        return not read_epochs(run_dir, limit=1)
    except CorruptRunFile as error:
        raise DQUserError(f"cannot resume: {error}") from None


def saved_config(run_dir: Path) -> tuple[DictConfig, dict[str, str]]:
    """The config a run was started with and its Hydra group choices (empty for a run
    started from Python, which has no .hydra/hydra.yaml).

    Raises:
        DQUserError: ``run_dir`` is not a run directory, or its config (or hydra.yaml) is
            broken: one line naming the file (dq.rundir.read).
    """
    config_path = run_dir / HYDRA_DIR / "config.yaml"
    if not run_dir.is_dir():
        raise DQUserError(f"resume={run_dir}: {not_a_directory(run_dir)}")
    if not os.path.lexists(config_path) or not os.path.lexists(run_dir / RUN_JSON):  # a broken one is named below
        missing = config_path if not os.path.lexists(config_path) else run_dir / RUN_JSON
        raise DQUserError(f"resume={run_dir} is not a dq run directory (no {missing})")
    try:
        saved = read_config(run_dir)
        hydra = read_yaml(run_dir, HYDRA_YAML) if os.path.lexists(run_dir / HYDRA_YAML) else None
    except CorruptRunFile as error:
        raise DQUserError(f"cannot resume: {error}") from None
    choices = OmegaConf.select(hydra, "hydra.runtime.choices") if isinstance(hydra, DictConfig) else None
    return saved, dict(choices or {})


def check_resume_overrides(overrides: list[str]) -> None:
    """``dq-train resume=<run> [overrides]``, before Hydra composes: an override that
    changes a value the saved run holds is refused in one line naming the key, its saved
    and its given value (``dq.rundir.resume_config.saved_values_conflict``).

    Raises:
        DQUserError: that line, or what ``saved_config`` says of a directory that is no run.
    """
    resume = [item.partition("=")[2] for item in overrides if item.partition("=")[0] == "resume"]
    if not resume or resume[-1] in ("", "null"):
        return
    saved, _ = saved_config(Path(resume[-1]))
    saved_values_conflict(saved, overrides)


def resume_point(cfg: DictConfig, run_dir: Path, console: Console) -> ResumePoint | FromStart | None:
    """What the run in ``run_dir`` continues from; None when it has nothing left to train,
    ``FROM_START`` (said in one line) when it stopped before its first checkpoint.

    A completed run trains on only when ``cfg`` asks for more epochs than it was started
    with and early stopping had not stopped it (that decision stands: the monitored
    metric stopped improving, more epochs do not change it).
    """
    saved, _ = saved_config(run_dir)
    config_conflict(saved, cfg)
    grows = int(cfg.trainer.epochs) > int(saved.trainer.epochs)
    if grows and cfg.scheduler.name in EPOCH_SHAPED_SCHEDULERS:
        raise DQUserError(
            f"trainer.epochs cannot grow with scheduler={cfg.scheduler.name}: its curve spans the "
            f"{saved.trainer.epochs} epochs the run was started with; use scheduler=step or start a new run"
        )
    try:
        completed = read_run_json(run_dir)["status"] == "completed"
    except CorruptRunFile as error:
        raise DQUserError(f"cannot resume: {error}") from None
    if completed and not grows:
        console.print(f"{run_dir}: already completed; nothing to train", markup=False, highlight=False, soft_wrap=True)
        return None
    if not completed and stopped_before_first_checkpoint(run_dir):
        line = f"{run_dir}: stopped before its first checkpoint; training it from the beginning"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        return FROM_START
    last = read_last(run_dir)
    if completed and stopped_early(last):
        console.print(
            f"{run_dir}: already completed; early stopping ended it at epoch {last['epoch']}, "
            f"so trainer.epochs={cfg.trainer.epochs} adds nothing",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return None
    return load_resume_point(run_dir, last, cut=False)  # settle cuts, once the model is built
