"""Writing a run directory's files: atomic writes, the one append, and a full disk in one line.

Every file is written to a temporary sibling, fsynced and renamed into place (then the
directory is fsynced), so a reader never sees half a file and a crash or a full disk never
destroys what an earlier step finished. metrics.jsonl is the one file appended to: a failed
append is cut back to the file's length before it, so it never ends in half a line.

A write that finds the filesystem full, the quota spent or the file-size limit reached
(ENOSPC, EDQUOT, EFBIG) raises ``DiskFull``: one line naming the file; the temporary file is
removed and the file it was meant to replace is as it was. Where each file goes is
``dq.rundir.layout``'s; reading them back is ``dq.rundir.read``'s.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from dq.errors import DiskFull

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
    before the rename (dq.rundir.checksums records its sha256 there).

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
