"""The run directory: its layout, atomic writes and the run.json manifest.

Layout (docs/design.md's output contract)::

    <run_dir>/.hydra/            Hydra's own record of the composed config
    <run_dir>/run.json           status running|completed|failed|interrupted, times, provenance
    <run_dir>/metrics.jsonl      one line per epoch
    <run_dir>/metrics.json       final flat metrics
    <run_dir>/checkpoints/       last.pt, best.pt
    <run_dir>/baselines.json     dq-baselines' numbers beside the run's (fairness on tabular data)

Every file is written to a temporary sibling, fsynced and renamed into place (then the
directory is fsynced), so a reader never sees half a file and a crash or a full disk never
destroys what an earlier step finished. metrics.jsonl is the one file appended to: a failed
append is cut back to the file's length before it, so it never ends in half a line.

A write that finds the filesystem full, the quota spent or the file-size limit reached
(ENOSPC, EDQUOT, EFBIG) raises ``DiskFull``: one line naming the file; the temporary file is
removed and the file it was meant to replace is as it was.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.errors import DiskFull, DQUserError, first_line

if TYPE_CHECKING:  # torch is imported where a function needs it: reading run files does not
    import torch

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


# Errors that mean "no room": a full filesystem, a spent quota, the file-size limit.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_space(path: Path, error: OSError) -> DiskFull:
    """The one-line ``DiskFull`` for a write of ``path`` that failed with ``error``."""
    return DiskFull(f"no space left on device writing {path} ({os.strerror(error.errno or 0)})")


@contextmanager
def disk_full_as_one_line(path: Path) -> Iterator[None]:
    """Turn an OSError that means "no room" (``NO_SPACE_ERRNOS``) while writing ``path`` into
    ``DiskFull``; any other error passes unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS:
            raise no_space(path, error) from error
        raise


def quiet_log_files_without_room() -> None:
    """Hydra logs a run to ``<run dir>/<job>.log``: a full disk costs that file its lines,
    instead of a ``--- Logging error ---`` traceback on stderr for each record (dq's own
    line already says which file found no room). Any other logging error is reported as ever."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and not getattr(handler, "_dq_quiet", False):
            handler.handleError = _no_room_is_quiet(handler.handleError)  # type: ignore[method-assign]
            handler._dq_quiet = True  # type: ignore[attr-defined]


def _no_room_is_quiet(report: Callable[[logging.LogRecord], None]) -> Callable[[logging.LogRecord], None]:
    def handle_error(record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]  # handleError is called inside the handler's except block
        if not (isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS):
            report(record)

    return handle_error


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    if directory and os.name == "nt":  # Windows cannot open a directory to fsync it
        return
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError as error:
        if not directory or error.errno in NO_SPACE_ERRNOS:  # some filesystems cannot fsync a directory
            raise
    finally:
        os.close(fd)


def atomic_write(
    path: Path, write: Callable[[Path], None], before_replace: Callable[[Path], None] | None = None
) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the directory: after a crash either the old file or the whole new one
    is there, never a part. ``before_replace(tmp)`` runs on the finished temporary file just
    before the rename (dq.checksums records its sha256 there).

    Raises:
        DiskFull: no room for it (ENOSPC, EDQUOT, EFBIG); ``path`` is untouched and the
            temporary file removed.
    """
    path = Path(path)
    with disk_full_as_one_line(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        # Created 0666 less the process umask, like any ordinary file (mkstemp would give 0600).
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            write(tmp)
            _fsync_path(tmp)
            if before_replace is not None:
                before_replace(tmp)
            os.replace(tmp, path)
        finally:
            with suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_path(path.parent, directory=True)


def write_text(path: Path, text: str, before_replace: Callable[[Path], None] | None = None) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), before_replace)


def write_json(path: Path, data: Mapping[str, Any], before_replace: Callable[[Path], None] | None = None) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", before_replace)


class _RecordingFile:
    """A file torch.save writes through, keeping the OSError of a failed write: torch turns
    it into a RuntimeError without an errno, and a full disk must still be told apart."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def save_torch(path: Path, obj: Any, before_replace: Callable[[Path], None] | None = None) -> None:
    import torch

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            recording = _RecordingFile(handle)
            try:
                torch.save(obj, recording)
            except RuntimeError:
                if recording.error is not None:
                    raise recording.error from None
                raise

    atomic_write(path, write, before_replace)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of plain tensors and Python values, loaded with ``weights_only=True``:
    unpickling a file never runs code named in it.

    Raises:
        DQUserError: the file names any other object (a class, a function), in one line.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # a plain pickle's protocol: refused below, in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # what weights_only raises for a global it does not allow
        raise DQUserError(
            f"{path} holds objects other than tensors and plain values; refused to load it "
            f"(checkpoints load with weights_only=True: {first_line(str(error))[:200]})"
        ) from error  # dq.run_files words torch's own reason


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one line and fsync it: an epoch that finished stays recorded.

    The line goes out in one ``os.write`` (more only if the kernel takes part of it); if
    any of it fails, the file is cut back to its length before, so it never ends in half a
    line. Appending costs one line per epoch, where an atomic rewrite would cost the file.

    Raises:
        DiskFull: no room for the line; the file is as it was.
    """
    data = (json.dumps(record, default=str) + "\n").encode("utf-8")
    with disk_full_as_one_line(Path(path)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(read_regular(path).decode("utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = read_regular(path).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# The most bytes dq reads from a run's text file (JSON, JSONL, YAML): a metrics.jsonl of
# 100,000 epochs is about 100 MB less than this. Checkpoints are bounded by their own size.
MAX_TEXT_BYTES = 256 * 1024 * 1024
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """A path dq would read that is not a plain file, or one too big to be one of dq's.

    Attributes:
        problem: what it is, without the path (``is a named pipe (FIFO), not a regular file``).
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.problem = problem


def _special(path: Path, mode: int) -> str | None:
    """What ``path`` is when it is not a regular file (None when it is one)."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    target = f" ({os.path.realpath(path)})" if os.path.islink(path) and not stat.S_ISDIR(mode) else ""
    return f"is {kind}{target}, not a regular file"


def not_a_directory(path: Path) -> str:
    """Why ``path`` cannot be a run directory: ``no such directory``, or what it is instead
    (a symlink loop, a file, a pipe)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such directory"
    except OSError as error:
        return (
            "is a symlink loop, not a directory" if error.errno == errno.ELOOP else f"cannot be read ({error.strerror})"
        )
    kind = "a regular file" if stat.S_ISREG(mode) else next((n for t, n in _FILE_KINDS if t(mode)), "not a file")
    return f"is {kind}, not a directory"


def regular_file_size(path: Path) -> int:
    """The size of ``path``, which must be a regular file (symlinks followed); nothing is
    opened, so a named pipe cannot block and /dev/zero is not read.

    Raises:
        FileNotFoundError: there is nothing at ``path``.
        NotRegularFile: a directory, a pipe, a device, a socket or a symlink loop.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile(path, "is a symlink loop, not a regular file") from None
        raise
    problem = _special(Path(path), info.st_mode)
    if problem is not None:
        raise NotRegularFile(path, problem)
    return info.st_size


def read_regular(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes: a pipe, a device or
    a symlink loop is refused before it is opened, and no read goes past ``limit``.

    Raises:
        FileNotFoundError: there is nothing at ``path``.
        NotRegularFile: not a regular file (``regular_file_size``), or larger than ``limit``.
    """
    regular_file_size(path)
    # O_NONBLOCK: a pipe swapped in after the check still cannot block the open.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        problem = _special(Path(path), os.fstat(fd).st_mode)
        if problem is not None:
            raise NotRegularFile(path, problem)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotRegularFile(path, f"is larger than {limit // 2**20} MiB, more than any file dq writes there")
    return data


TMP_SUFFIX = ".tmp"
# atomic_write's temporary names: .<name>.<pid>.<8 hex digits>.tmp
_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but is another user's
        return True
    return True


def remove_stale_tmp(run_dir: Path) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed process (``kill -9``) left
    in ``run_dir`` and its folders; only dq's own names, and never a live process's.
    Returns what was removed."""
    removed = []
    for root, _dirs, files in os.walk(run_dir):
        for name in files:
            match = _TMP_NAME.match(name)
            pid = int(match["pid"]) if match else None
            if pid is None or pid == os.getpid() or _alive(pid):
                continue
            with suppress(FileNotFoundError):
                (Path(root) / name).unlink()
                removed.append(Path(root) / name)
    return removed


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


def discard_unstarted(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but Hydra's own files.

    A run rejected before training (bad config, missing data) must not leave a
    directory that looks like a result.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    # The lock file too: a run claims its directory (dq.claims) before Hydra writes there.
    leftovers = [p for p in run_dir.iterdir() if p.name != HYDRA_DIR and p.suffix not in (".log", ".lock")]
    if not leftovers:
        shutil.rmtree(run_dir, ignore_errors=True)
        with suppress(OSError):  # the experiment folder too, when this was its only run
            run_dir.parent.rmdir()
