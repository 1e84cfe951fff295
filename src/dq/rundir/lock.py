"""One process at a time in a run (or sweep) directory: a lock that a dead holder never
leaves stuck.

``fcntl.flock`` on ``<dir>/.dq.lock``, taken without waiting. The kernel drops the lock
when the holder's last descriptor of it closes, so a process that dies in any way
(SIGKILL, out of memory) frees it at once; a run.json that still says ``running`` then
means nothing. The file itself stays (deleting it would let a second process lock a new
file of the same name while the first still holds the old one) and names its holder: pid,
host and since when, which a refusal quotes.

Limits:

- NFS. Linux turns ``flock`` on an NFS mount into a POSIX lock that the server enforces
  across clients (NFSv4, and NFSv3 with lockd). A client that dies keeps its locks until
  the server gives up on it (NFSv4's lease, about 90 s; lockd's recovery for v3), so a
  resume right after a node died may be refused for that long. A mount with ``nolock`` or
  ``local_lock=flock|all`` makes locks local to each client: two hosts can then both take
  one. On such a mount do not resume on one host what may still run on another.
- A child forked without exec (a DataLoader worker on Linux) shares the lock and keeps it
  until it exits; processes started with exec (joblib's and submitit's workers, any
  ``subprocess``) do not inherit it.

Within one process the lock is re-entrant: a sweep job holds its directory's lock and
the run it trains takes it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

from dq.errors import DQUserError

LOCK_FILE = ".dq.lock"

# Locks this process holds: resolved directory → [descriptor, depth].
_held: dict[str, list[int]] = {}


class DirectoryBusy(DQUserError):
    """Another live process holds the directory's lock."""


def holder_text(path: Path) -> str:
    """``pid 4242 on host node1 since 2026-...``, from a lock file, as well as it can be read."""
    try:
        holder = json.loads(Path(path).read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on host {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):  # taken a moment ago, not yet written
        return "another process (its pid is not written yet)"


class DirectoryLock:
    """The lock of one directory; ``acquire`` raises ``DirectoryBusy`` with ``refusal``'s line."""

    def __init__(self, directory: Path, refusal: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.refusal = refusal
        self._key = str(self.directory.resolve())
        self._acquired = False

    def acquire(self) -> None:
        """Take the lock without waiting (again, when this process holds it already).

        Raises:
            DirectoryBusy: one line, ``<refusal> <dir>: it is running in pid ... on host ...``.
        """
        if self._acquired:
            return
        held = _held.get(self._key)
        if held is not None:
            held[1] += 1
            self._acquired = True
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirectoryBusy(f"{self.refusal} {self.directory}: it is running in {holder_text(self.path)}") from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now().isoformat("T", "seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        _held[self._key] = [fd, 1]
        self._acquired = True

    def held_here(self) -> bool:
        """Whether this process holds the directory's lock (through any ``DirectoryLock``)."""
        return self._key in _held

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        held = _held[self._key]
        held[1] -= 1
        if held[1] == 0:
            del _held[self._key]
            with suppress(OSError):
                os.ftruncate(held[0], 0)  # no holder any more
            os.close(held[0])  # closing the last descriptor drops the lock


@contextmanager
def hold(directory: Path, refusal: str) -> Iterator[DirectoryLock]:
    """Hold ``directory``'s lock inside the block (the directory must exist)."""
    lock = DirectoryLock(directory, refusal)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
