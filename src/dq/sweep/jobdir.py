"""One sweep job's directory as a re-run sees it: what an earlier invocation left there
and what to do about it.

Hydra rewrites ``.hydra/`` before the task function runs, so the earlier state is read
from run.json alone. Light imports only: the sweep callback uses this in every dq-train.
"""

from __future__ import annotations

import shutil
from contextlib import suppress
from enum import StrEnum
from pathlib import Path
from typing import Any

from dq.rundir.layout import CHECKPOINTS, HYDRA_DIR, LAST_CHECKPOINT
from dq.rundir.lock import LOCK_FILE
from dq.rundir.read import run_json_or_none

# Written by dq.sweep.job into each job directory: what this invocation did with the job.
JOB_ACTION_JSON = "sweep_job.json"
# Overrides that choose how a job runs, not what it computes: a sweep may be finished
# with another launcher than the one that started it.
_PLACEMENT_KEYS = ("launcher",)
# Kept when a failed job is rerun: Hydra's record of this invocation, its log file, and the
# lock this process holds (a new file of that name would be a second, free lock).
_KEPT_ON_RERUN = {HYDRA_DIR, JOB_ACTION_JSON, LOCK_FILE}


class Action(StrEnum):
    """What a job of a re-run sweep does, decided from its own directory."""

    run = "ran"  # nothing there yet: train
    skip = "skipped"  # completed before: keep its results
    resume = "resumed"  # interrupted, or running in a process that is gone: continue from last.pt
    rerun = "reran"  # failed before: start again from scratch
    busy = "busy"  # its lock is held by a live process: leave it alone
    foreign = "refused"  # the directory holds a run with other overrides


def same_job(recorded: list[str], overrides: list[str]) -> bool:
    """Whether two override lists describe the same job (the launcher aside)."""

    def what(items: list[str]) -> list[str]:
        return [item for item in items if item.partition("=")[0].lstrip("+~") not in _PLACEMENT_KEYS]

    return what(list(recorded)) == what(list(overrides))


def decide(job_dir: Path, overrides: list[str]) -> tuple[Action, dict[str, Any] | None]:
    """What to do with this job, and the earlier run.json it was decided from; called with
    the job directory's lock held."""
    run = run_json_or_none(job_dir)
    if run is None:
        return Action.run, None
    recorded = run.get("overrides")
    if recorded is not None and not same_job(recorded, overrides):
        return Action.foreign, run
    status = run.get("status")
    if status == "completed":
        return Action.skip, run
    # "running" here is a dead process's word: the caller holds the job's lock, which a
    # live process would hold (dq.rundir.lock).
    if status in ("interrupted", "running"):
        # Stopped before its first epoch ended: nothing to resume from, so start afresh.
        has_last = (Path(job_dir) / CHECKPOINTS / LAST_CHECKPOINT).is_file()
        return (Action.resume if has_last else Action.rerun), run
    return Action.rerun, run


def clear_results(job_dir: Path) -> None:
    """Remove an earlier attempt's results (run.json, metrics, checkpoints, pictures),
    keeping Hydra's files and log, so a failed job starts again from scratch."""
    for path in Path(job_dir).iterdir():
        if path.name in _KEPT_ON_RERUN or path.suffix == ".log":
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            with suppress(FileNotFoundError):
                path.unlink()
