"""Pre-emption: SIGTERM or SIGUSR1 asks a run to stop after its current batch.

A cluster that pre-empts a job (SLURM with ``--signal=B:USR1@120``, or any scheduler that
sends SIGTERM before killing) gets a run that finishes the batch it is on, writes last.pt
and exits with code 75, from which ``resume=<run dir>`` continues exactly.

``catching_stop_signals()`` installs the handlers, for the training loop and for the
evaluation after it, and restores whatever was installed before on leaving; it nests
(only the outermost one installs). The handler only sets a flag, so nothing is cut off in
the middle of a step; the loop reads the flag (a Python bool: no device sync) after every
batch. ``stop_requested()`` stays true for the rest of the process, so a sweep's job
function can refuse to start further jobs after an interruption.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

_received: int | None = None  # the first stop signal this process got, while handlers were in
_depth = 0


def stop_requested() -> bool:
    """True once SIGTERM or SIGUSR1 arrived while a run was training or evaluating."""
    return _received is not None


def received_signal() -> str | None:
    """The name of the stop signal that arrived (``"SIGTERM"``), or None."""
    return signal.Signals(_received).name if _received is not None else None


def clear_stop_request() -> None:
    """Forget an earlier stop request (for a process that handled it and goes on, e.g. tests)."""
    global _received
    _received = None


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is None:
        _received = signum


@contextmanager
def catching_stop_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGUSR1 into a stop request while the block runs.

    Only the main thread can install signal handlers; elsewhere (a thread-based launcher)
    this does nothing and the signals keep their previous meaning.
    """
    global _depth
    if _depth > 0 or threading.current_thread() is not threading.main_thread():
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back; use the default.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
