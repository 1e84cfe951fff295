"""The run directory: its layout, atomic writes and the run.json manifest.

Layout (DESIGN.md's output contract)::

    <run_dir>/.hydra/            Hydra's own record of the composed config
    <run_dir>/run.json           status running|completed|failed|interrupted, times, provenance
    <run_dir>/metrics.jsonl      one line per epoch
    <run_dir>/metrics.json       final flat metrics
    <run_dir>/checkpoints/       last.pt, best.pt

Every file is written to a temporary sibling and renamed into place, so a reader never
sees half a file and a crash never destroys what an earlier step finished.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.errors import DQUserError, first_line

if TYPE_CHECKING:  # torch is imported where a function needs it: reading run files does not
    import torch

RUN_JSON = "run.json"
METRICS_JSON = "metrics.json"
METRICS_JSONL = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
HYDRA_DIR = ".hydra"
RUN_DIR_TIME_FORMAT = "%Y-%m-%d_%H-%M-%S.%f"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"

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


def default_run_dir(experiment_name: str, root: str | Path = "outputs") -> Path:
    """``outputs/<experiment>/<timestamp>``, as Hydra names it, for runs started from Python."""
    return Path(root) / experiment_name / datetime.now().strftime(RUN_DIR_TIME_FORMAT)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # Created 0666 less the process umask, like any ordinary file (mkstemp would give 0600).
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_torch(path: Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of plain tensors and Python values, loaded with ``weights_only=True``:
    unpickling a file never runs code named in it.

    Raises:
        DQUserError: the file names any other object (a class, a function), in one line.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # what weights_only raises for a global it does not allow
        raise DQUserError(
            f"{path} holds objects other than tensors and plain values; refused to load it "
            f"(checkpoints load with weights_only=True: {first_line(str(error))[:200]})"
        ) from None


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one line and flush it to disk: an epoch that finished stays recorded."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


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

    def interrupt(self, reason: str) -> None:
        self.data.update(status="interrupted", end=now_iso(), error=reason)
        write_json(self.path, self.data)


def discard_unstarted(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but Hydra's own files.

    A run rejected before training (bad config, missing data) must not leave a
    directory that looks like a result.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    leftovers = [p for p in run_dir.iterdir() if p.name != HYDRA_DIR and p.suffix != ".log"]
    if not leftovers:
        shutil.rmtree(run_dir, ignore_errors=True)
        with suppress(OSError):  # the experiment folder too, when this was its only run
            run_dir.parent.rmdir()
