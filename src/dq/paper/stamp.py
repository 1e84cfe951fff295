"""Where and when a table was made: the host, its cores, the start time and the machine's
load while the runs ran.

A table's seconds mean little without the load beside them: the same table takes three
minutes on an idle two-core machine and fifteen on a shared one. So the load average is
sampled through the whole invocation (a daemon thread reading ``os.getloadavg`` every
few seconds), and the table states its mean and peak next to the seconds.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class MachineStamp:
    """The machine a table ran on and its 1-minute load average while it ran."""

    host: str
    cpus: int
    started: str  # ISO 8601, UTC
    finished: str = ""
    loads: list[float] = field(default_factory=list)

    def describe(self) -> str:
        """One sentence: host, cores, start and end, and the load (mean, peak, samples)."""
        if not self.loads:
            load = "load average not sampled"
        else:
            mean = sum(self.loads) / len(self.loads)
            load = f"1-minute load average mean {mean:.1f}, peak {max(self.loads):.1f} ({len(self.loads)} samples)"
        return f"on {self.host} ({self.cpus} CPUs), {self.started} to {self.finished or '?'} UTC, {load}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


class LoadSampler:
    """Samples the 1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 10.0) -> None:
        self.stamp = MachineStamp(host=socket.gethostname(), cpus=os.cpu_count() or 1, started=_now())
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="dq-load-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.stamp.loads.append(round(os.getloadavg()[0], 2))
            if self._stop.wait(self._every):
                return

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> MachineStamp:
        """Stops sampling (one last sample) and returns the stamp with its end time."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.stamp.loads.append(round(os.getloadavg()[0], 2))
        self.stamp.finished = _now()
        return self.stamp
