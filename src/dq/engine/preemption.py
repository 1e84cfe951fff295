"""Interruption: SIGINT (Ctrl-C), SIGTERM, SIGUSR1 or SIGUSR2 asks a run to stop after its
current batch.

A person (Ctrl-C) or a cluster that pre-empts a job (SLURM with ``--signal=B:USR1@120``,
submitit's SIGUSR2 before the time limit, any scheduler that sends SIGTERM before killing)
gets a run that finishes the batch it is on, writes last.pt and exits (130 for SIGINT, 75
otherwise), from which ``resume=<run dir>`` continues exactly. A second SIGINT stops at
once (``KeyboardInterrupt``; last.pt stays as the last epoch's end left it); a second
signal of any other kind changes nothing.

A handler that was there before dq's (submitit's, which checkpoints the job, requeues it
and raises ``SystemExit``) is not run in the middle of a batch: ``pass_on_stop()`` calls
it once the run has stopped and recorded where.

``catching_stop_signals()`` installs the handlers (dq-train from its start to its exit, a
sweep job in a worker process for the job, ``dq.train()`` for its training and evaluation)
and restores whatever was installed before on leaving; it nests (only the outermost one
installs). The handler only sets a flag, so nothing is cut off in
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
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

_received: int | None = None  # the first stop signal this process got, while handlers were in
_depth = 0
_previous: dict[int, Any] = {}  # the handlers the outermost block replaced, for pass_on_stop
_passed_on = False  # pass_on_stop ran the handler already
_at_once = False  # inside second_sigint_stops_at_once


def stop_requested() -> bool:
    """True once SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 arrived while dq's handlers were in."""
    return _received is not None


def received_signal() -> str | None:
    """The name of the stop signal that arrived (``"SIGTERM"``), or None."""
    return signal.Signals(_received).name if _received is not None else None


def by_user() -> bool:
    """Whether the stop came from a person (SIGINT: Ctrl-C), whose exit code is 130."""
    return _received == signal.SIGINT


def clear_stop_request() -> None:
    """Forget an earlier stop request (for a process that handled it and goes on, e.g. tests)."""
    global _received, _passed_on
    _received, _passed_on = None, False


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is None:
        _received = signum
    elif signum == signal.SIGINT and _at_once:  # Ctrl-C again: the person will not wait for the batch
        raise KeyboardInterrupt


def pass_on_stop() -> None:
    """Give the stop signal to the handler dq's replaced, if that was a Python function of
    another library (submitit's ``checkpoint_and_try_requeue``, which requeues the job and
    raises ``SystemExit``); call it once the run's record says where it stopped."""
    global _passed_on
    handler = _previous.get(_received) if _received is not None else None
    if callable(handler) and handler is not signal.default_int_handler and not _passed_on:
        _passed_on = True
        handler(_received, None)


@contextmanager
def second_sigint_stops_at_once() -> Iterator[None]:
    """While the block runs (training, evaluation), a Ctrl-C after the first raises
    ``KeyboardInterrupt``: the person will not wait for the batch or the evaluation. Outside
    it (writing run.json, exiting) a second one is ignored, so the record is never cut off."""
    global _at_once
    before, _at_once = _at_once, True
    try:
        yield
    finally:
        _at_once = before


@contextmanager
def catching_stop_signals(*, leaving: bool = False) -> Iterator[None]:
    """Turn SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 into a stop request while the block runs.

    ``leaving``: the block is a whole process that exits once stopped (``dq-train``, a
    sweep); after a stop its later signals are ignored instead of getting their old meaning
    back, so a second SIGTERM while it writes its record and exits cannot turn its 75 into
    143. Only the main thread can install signal handlers; elsewhere (a thread-based
    launcher) this does nothing and the signals keep their previous meaning.
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
    _previous.update(previous)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in previous.items():
            if leaving and _received is not None:
                handler = signal.SIG_IGN
            # None: a handler installed outside Python, which cannot be put back; use the default.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
