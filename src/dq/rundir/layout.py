"""Where everything is in a run directory (and a sweep directory): the name of every file
dq writes there, and the name of the directory itself.

Layout (docs/design.md's run-directory contract)::

    <run_dir>/.hydra/            Hydra's own record of the composed config
    <run_dir>/run.json           status running|completed|failed|interrupted, times, provenance
    <run_dir>/checksums.json     the sha256 of each file as it was written (dq.rundir.checksums)
    <run_dir>/metrics.jsonl      one line per epoch
    <run_dir>/metrics.json       final flat metrics
    <run_dir>/checkpoints/       last.pt, best.pt
    <run_dir>/baselines.json     dq-baselines' numbers beside the run's (fairness on tabular data)
    <run_dir>/compressed/<name>/ a compressed copy of the run, itself a run directory

Every reader and writer names a file through these constants, so a file is renamed here or
nowhere. A leaf: it imports nothing else of dq.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import datetime, timedelta
from pathlib import Path

RUN_JSON = "run.json"
SWEEP_JSON = "sweep.json"  # a sweep directory's record of its jobs (dq.sweep.summary)
METRICS_JSON = "metrics.json"
METRICS_JSONL = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
HYDRA_DIR = ".hydra"
RUN_DIR_TIME_FORMAT = "%Y-%m-%d_%H-%M-%S.%f"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
BASELINES_JSON = "baselines.json"
# dq-compress and dq-train compress=...: <run>/compressed/<name>/ holds a compressed run.
COMPRESSED = "compressed"
COMPRESSION_JSON = "compression.json"

# Paths relative to the run directory (the names a reader's one-line errors use).
CONFIG_YAML = f"{HYDRA_DIR}/config.yaml"
HYDRA_YAML = f"{HYDRA_DIR}/hydra.yaml"
LAST_PT = f"{CHECKPOINTS}/{LAST_CHECKPOINT}"
BEST_PT = f"{CHECKPOINTS}/{BEST_CHECKPOINT}"
# What a run directory's files are named relative to it (the names the lines use).
RUN_FILES = (RUN_JSON, METRICS_JSON, METRICS_JSONL, CONFIG_YAML, LAST_PT, BEST_PT)
# The sha256 of each file the run wrote, recorded as it was written (dq.rundir.checksums writes it).
CHECKSUMS_JSON = "checksums.json"
MULTIRUN_YAML = "multirun.yaml"  # Hydra's record of a sweep, at its root


_last_stamp: datetime | None = None


def unique_stamp() -> str:
    """A run or sweep directory's name, ``<YYYY-MM-DD_HH-MM-SS.ffffff>_<host>-<pid>``
    (conf/config.yaml's ``${dq_stamp:}``): unique by construction, not by luck. No two live
    processes share a host and a pid, and one process never hands out the same time twice,
    so two runs or sweeps started at the same microsecond into one outputs root (on one
    machine or on a shared file system) never share a directory."""
    global _last_stamp
    now = datetime.now()
    if _last_stamp is not None and now <= _last_stamp:
        now = _last_stamp + timedelta(microseconds=1)
    _last_stamp = now
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
    return f"{now.strftime(RUN_DIR_TIME_FORMAT)}_{host}-{os.getpid()}"


def default_run_dir(experiment_name: str, root: str | Path = "outputs") -> Path:
    """``outputs/<experiment>/<stamp>``, as Hydra names it, for runs started from Python."""
    return Path(root) / experiment_name / unique_stamp()


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS
