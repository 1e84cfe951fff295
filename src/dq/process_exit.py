"""Leaving a dq process without the interpreter's teardown.

Python's own exit frees every module and object one by one. With torch loaded (and
torch._dynamo, which every torch optimizer imports) that took 0.4-0.6 s of CPU after a bare
``import torch`` and 0.7-1.0 s with torch._dynamo on a quiet 2-core machine (``python -c
"import torch, torch._dynamo"`` against the same ending in ``os._exit(0)``; 6 s for a sweep
worker on a loaded one), paid by every ``dq-train``: a single run, a sweep's parent and its
workers, each row of a paper table. Nothing of a run waits for it: every file a run writes is
written and synced before (``dq.rundir.write``). So a console command ends here instead, after
doing what the teardown does that anyone could see: the threads that are not daemons finish,
the ``atexit`` functions run (logging's flush, the experiment loggers' close, temporary
folders removed, multiprocessing's children reaped), the standard streams are flushed.

Only the console scripts and the sweep worker leave this way; code that calls ``train_main``
in a process of its own (the tests) returns from it as from any function.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def run_then_leave(main: Callable[[], object]) -> NoReturn:
    """Run a console command's ``main`` and leave with its exit status (a ``SystemExit``'s
    code as Python would read it). An unexpected exception propagates: Python prints its
    traceback and exits 1 the usual way."""
    try:
        main()
    except SystemExit as leaving:
        leave(exit_status(leaving.code))
    leave(0)


def exit_status(code: object) -> int:
    """``SystemExit.code`` as the exit status Python gives it: None is 0, a number itself,
    anything else (a message) is printed on stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def leave(status: int) -> NoReturn:
    """End the process with ``status`` after the visible part of Python's exit. Under a
    profiler or a tracer (``python -m cProfile``, a debugger, coverage), which write their
    results after the program returns, it leaves the usual way instead."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what Python's exit runs first; the rest of it is the teardown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a pipe whose reader left
            stream.flush()
    os._exit(status)
