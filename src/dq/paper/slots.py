"""At most N ``dq-train -m`` children of dq-table at once, all stopped together.

Why: a table's row is a sweep over a few seeds (usually three). Run one after another with
``launcher=joblib`` on two cores, three seeds take two rounds and one core idles in the
second, about a quarter of a table's core-time; rows side by side (``--jobs N``) keep the
cores busy across rows while each row's process keeps its imports from seed to seed.

Stopping: dq-table catches its stop signals (dq.engine.preemption) while children run;
``check_stop`` sees the request, SIGTERMs every running child (dq-train then stops after
its batch, records the run ``interrupted`` and starts no further seed), SIGKILLs what is
left after ``STOP_WAIT_S`` and raises ``RunInterrupted``: no child is left training, and a
re-run reuses every finished run.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dq.engine import preemption
from dq.errors import RunInterrupted

POLL_S = 0.2  # how long to sleep before looking at the children again
STOP_WAIT_S = 30  # how long stopped children get to record their runs before SIGKILL

Done = Callable[[int], None]


@dataclass
class _Child:
    process: subprocess.Popen
    log: IO[str]
    done: Done  # called with the child's exit status once it ended


class Slots:
    """Up to ``at_once`` child processes; ``start`` waits for a free slot first."""

    def __init__(self, at_once: int) -> None:
        self.at_once = at_once
        self.children: list[_Child] = []

    def start(self, args: list[str], log_path: Path, done: Done) -> None:
        """Start ``args`` (output to ``log_path``, after a ``$ command`` line) once a slot is
        free; ``done(status)`` runs when it ends."""
        self.wait_for_room()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed when the child ends)
        log.write("$ " + " ".join(args) + "\n")
        log.flush()
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.children.append(_Child(process, log, done))

    def wait_for_room(self) -> None:
        """Return once fewer than ``at_once`` children run (in this process's work too: a
        baseline row takes a slot while it runs here)."""
        self._reap()
        while len(self.children) >= self.at_once:
            time.sleep(POLL_S)
            self._reap()

    def wait_all(self) -> None:
        self._reap()
        while self.children:
            time.sleep(POLL_S)
            self._reap()

    def check_stop(self) -> None:
        """After a stop signal: stop every child and raise ``RunInterrupted``."""
        if not preemption.stop_requested():
            return
        self.stop()
        name = preemption.received_signal()
        raise RunInterrupted(f"stopped by {name}", by_user=preemption.by_user())

    def stop(self) -> None:
        """SIGTERM every running child, SIGKILL those still there after ``STOP_WAIT_S``."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while any(child.process.poll() is None for child in self.children) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        for child in self.children:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait()
            child.log.close()
        self.children = []

    def _reap(self) -> None:
        """Call ``done`` for each child that ended (in start order), then look for a stop."""
        for child in list(self.children):
            status = child.process.poll()
            if status is not None:
                self.children.remove(child)
                child.log.close()
                child.done(status)
        self.check_stop()
