"""run.json: the run's status and provenance, kept up to date while it runs (``RunRecord``).

Provenance is what decides a run's numbers besides its config: the git commit and dirty
flag of dq's checkout, the versions of the packages that compute, Python, the host and the
device. A re-run sweep reads ``pid`` and ``host`` to tell a live job from a dead one.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.rundir.layout import RUN_JSON
from dq.rundir.read import read_json
from dq.rundir.write import write_json

if TYPE_CHECKING:  # torch is imported where a function needs it
    import torch

# Packages whose versions decide a run's numbers; recorded in run.json.
RECORDED_PACKAGES = (
    "dq",
    "torch",
    "torchvision",
    "numpy",
    "hydra-core",
    "omegaconf",
    "captum",
    "fairlearn",
    "scikit-learn",
    "pandas",
    "rich",
)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(where: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the checkout that holds dq's source (None outside one)."""
    where = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def device_description(device: torch.device) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["name"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


class RunRecord:
    """Keeps run.json up to date: ``running`` at start, then ``completed`` or ``failed``,
    or ``interrupted`` (pre-empted; last.pt says where). A resumed run reopens it: status
    ``running`` again, the first start kept, the time appended to ``resumed``.

    ``pid`` and ``host`` let a re-run sweep tell a live job from a dead one; ``overrides``
    (Hydra's task overrides) let it tell this job's directory from another job's.
    """

    def __init__(
        self, run_dir: Path, seed: int, command: list[str] | None = None, overrides: list[str] | None = None
    ) -> None:
        self.path = Path(run_dir) / RUN_JSON
        self.data: dict[str, Any] = {
            "status": "running",
            "start": now_iso(),
            "end": None,
            "seed": seed,
            "command": command if command is not None else sys.argv,
            "git": git_state(),
            "packages": package_versions(),
            "python": platform.python_version(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "overrides": overrides,
            "device": None,
            "error": None,
        }

    @classmethod
    def reopen(cls, run_dir: Path) -> RunRecord:
        """The record of an earlier run in ``run_dir``, to be resumed (``start`` then writes it)."""
        record = cls.__new__(cls)
        record.path = Path(run_dir) / RUN_JSON
        record.data = read_json(record.path)
        # The resuming process is the live one now: a re-run sweep must not take it for dead.
        record.data.update(status="running", end=None, error=None, host=socket.gethostname(), pid=os.getpid())
        record.data.pop("stopped_at", None)  # where the interruption was: resumed from there now
        record.data["resumed"] = [*record.data.get("resumed", []), now_iso()]
        return record

    def start(self, device: torch.device) -> None:
        self.data["device"] = device_description(device)
        write_json(self.path, self.data)

    def finish(self) -> None:
        self.data.update(status="completed", end=now_iso())
        write_json(self.path, self.data)

    def fail(self, error: BaseException) -> None:
        self.data.update(status="failed", end=now_iso(), error=f"{type(error).__name__}: {error}")
        write_json(self.path, self.data)

    def interrupt(self, reason: str, at: dict[str, Any] | None = None) -> None:
        """``interrupted``, with the one line ``reason`` and, under ``stopped_at``, where
        (``{"signal", "epoch", "batch", "batches"}``; empty when outside training)."""
        self.data.update(status="interrupted", end=now_iso(), error=reason, stopped_at=at or {})
        write_json(self.path, self.data)
