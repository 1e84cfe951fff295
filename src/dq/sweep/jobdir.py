"""One sweep job's directory as a re-run sees it: what an earlier invocation left there
and what to do about it.

Hydra rewrites ``.hydra/`` before the task function runs, so the earlier state is read
from run.json alone. Light imports only: the sweep callback uses this in every dq-train.
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import suppress
from enum import StrEnum
from pathlib import Path
from typing import Any

from dq.outputs import CHECKPOINTS, HYDRA_DIR, LAST_CHECKPOINT, METRICS_JSON, RUN_JSON, read_json

# Written by dq.sweep.job into each job directory: what this invocation did with the job.
JOB_ACTION_JSON = "sweep_job.json"
# Overrides that choose how a job runs, not what it computes: a sweep may be finished
# with another launcher than the one that started it.
_PLACEMENT_KEYS = ("launcher",)
# Kept when a failed job is rerun: Hydra's record of this invocation and its log file.
_KEPT_ON_RERUN = {HYDRA_DIR, JOB_ACTION_JSON}


class Action(StrEnum):
    """What a job of a re-run sweep does, decided from its own directory."""

    run = "ran"  # nothing there yet: train
    skip = "skipped"  # completed before: keep its results
    resume = "resumed"  # interrupted, or running in a process that is gone: continue from last.pt
    rerun = "reran"  # failed before: start again from scratch
    busy = "busy"  # running in a live process: leave it alone
    foreign = "refused"  # the directory holds a run with other overrides


def read_run(job_dir: Path) -> dict[str, Any] | None:
    """The job's run.json, or None when it has none (or an unreadable one)."""
    try:
        return read_json(Path(job_dir) / RUN_JSON)
    except (OSError, ValueError):
        return None


def read_metrics(job_dir: Path) -> dict[str, float]:
    try:
        return read_json(Path(job_dir) / METRICS_JSON)
    except (OSError, ValueError):
        return {}


def process_alive(run: dict[str, Any]) -> bool:
    """Whether the process that wrote run.json still runs.

    Only a process on this host can be checked; one recorded on another host is taken
    as dead (a re-run sweep on a shared file system must not start while the old one
    still runs elsewhere). Our own pid is never the old run: pids are reused.
    """
    pid = run.get("pid")
    if not isinstance(pid, int) or run.get("host") != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def same_job(recorded: list[str], overrides: list[str]) -> bool:
    """Whether two override lists describe the same job (the launcher aside)."""

    def what(items: list[str]) -> list[str]:
        return [item for item in items if item.partition("=")[0].lstrip("+~") not in _PLACEMENT_KEYS]

    return what(list(recorded)) == what(list(overrides))


def decide(job_dir: Path, overrides: list[str]) -> tuple[Action, dict[str, Any] | None]:
    """What to do with this job, and the earlier run.json it was decided from."""
    run = read_run(job_dir)
    if run is None:
        return Action.run, None
    recorded = run.get("overrides")
    if recorded is not None and not same_job(recorded, overrides):
        return Action.foreign, run
    status = run.get("status")
    if status == "completed":
        return Action.skip, run
    if status == "running" and process_alive(run):
        return Action.busy, run
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
