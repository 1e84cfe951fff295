"""Whether, and from where, a run directory continues: the config it was started with,
the overrides' agreement with it, and what a completed run or a grown ``trainer.epochs``
means. ``dq.runner`` asks this before it builds anything; ``dq.engine.resume`` then loads
the checkpoint into the freshly built objects.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dq.config.resume import config_conflict, saved_values_conflict
from dq.engine.optim import EPOCH_SHAPED_SCHEDULERS
from dq.engine.resume import ResumePoint, load_resume_point, read_last, stopped_early
from dq.errors import DQUserError
from dq.outputs import CHECKPOINTS, HYDRA_DIR, LAST_CHECKPOINT, RUN_JSON, not_a_directory
from dq.run_files import CorruptRunFile, read_config, read_epochs, read_run_json, read_yaml

HYDRA_YAML = f"{HYDRA_DIR}/hydra.yaml"


class FromStart:
    """``resume_point``'s answer for a run stopped before its first checkpoint: train it
    from the beginning, in its directory (nothing it did is lost)."""


FROM_START = FromStart()


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
            broken: one line naming the file (dq.run_files).
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
    and its given value (``dq.config.resume.saved_values_conflict``).

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
    return load_resume_point(run_dir, last, cut=False)  # dq.engine.resume.settle cuts, once the model is built
