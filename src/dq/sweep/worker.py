"""A sweep worker of ``launcher=joblib``: ``python -P -m dq.sweep.worker NUMBER PARENT``,
started by ``dq.sweep.processes``, runs the jobs its parent hands over, one after another.

The process first arranges to die with its parent (a SIGKILLed ``dq-train -m`` leaves no
job training on). Its standard input is a socket to the parent (``multiprocessing``'s
framed messages): first the sweep's shared part (Hydra's context, the sweep config, the
task function and Hydra's global state, pickled by cloudpickle), then one message per job
(its number and overrides). It runs each job as Hydra's joblib launcher would
(``execute_job``) and answers with Hydra's ``JobReturn``; end of input (the parent has no
more jobs, or is gone) ends the process. What it keeps between jobs is what makes the next
one start fast: Python, torch and dq imported, dq's compiled schemas. What it does not keep
is what could change a job's result: each job unpickles the shared part afresh (Hydra's
global state exactly as the parent left it), starts in the worker's first directory and
with no stop request left over from an earlier job (``dq.engine.preemption``); seeding is
per job, and Hydra sets up each job's logging anew.

``-P`` keeps the directory the sweep started in off ``sys.path``: a user's ``inspect.py``
there is never imported in place of the standard one. Before its first job the worker imports
what every job needs (``warm_up``), which a worker started early does while the sweeper
composes the jobs' configs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

from dq.process_exit import leave

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal this process gets when its parent thread ends


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, and leave at once when the
    parent is already gone (it died before the request was in place). Elsewhere than
    Linux this only checks the parent once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def execute_job(idx: int, overrides: list[str], context: Any, config: Any, task: Any, singleton: Any) -> Any:
    """Hydra's job run for job number ``idx``: the sweep config of its overrides, then
    ``hydra.core.utils.run_job`` in ``<hydra.sweep.dir>/<hydra.sweep.subdir>`` (as
    hydra_joblib_launcher's ``execute_job`` does in its worker)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    setup_globals()
    Singleton.set_state(singleton)
    sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=context,
        config=sweep_config,
        task_function=task,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


def run_handed_job(message: bytes, shared: bytes, home: str) -> Any:
    """One job as if in a fresh process: Hydra's state unpickled anew from ``shared``, the
    worker's first directory, no stop request from an earlier job (the parent hands over a
    job only while the sweep goes on)."""
    import cloudpickle

    from dq.engine.preemption import clear_stop_request

    os.chdir(home)
    clear_stop_request()
    idx, overrides = cloudpickle.loads(message)
    return execute_job(idx, overrides, *cloudpickle.loads(shared))


def parent_channel() -> Any:
    """The socket to the parent, moved off standard input (which becomes /dev/null, so that
    nothing reading stdin takes the parent's messages), and closed in any child forked
    later (a DataLoader's workers): the parent sees end of input as soon as this process dies."""
    from multiprocessing.connection import Connection

    channel = Connection(os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.register_at_fork(after_in_child=channel.close)
    return channel


def next_message(channel: Any) -> bytes | None:
    """The parent's next message, or None at end of input or on Ctrl-C while waiting."""
    try:
        return channel.recv_bytes()
    except (EOFError, OSError, KeyboardInterrupt):
        return None


# What every job imports that a bare worker has not: the task function's module (dq.cli) and
# the run, the libraries its metrics and report load on first use (fairlearn with pandas and
# scikit-learn, matplotlib), and torch._dynamo, which a torch optimizer imports when built.
WARM_MODULES = (
    "torch._dynamo",
    "dq.cli",
    "dq.sweep.job",
    "dq.runner",
    "dq.metrics.fairness",
    "dq.metrics.intervals",
    "dq.report.run_report",
    "dq.report.plots.curves",
)


def warm_up() -> None:
    """Import what a job needs before the first one comes: a worker started early
    (``dq.sweep.processes.start_early``) does it while the sweeper is still composing the
    jobs' configs. Imports only: nothing that a job's result could depend on (no seed, no
    thread setting, no data) happens here, and every job would import the same."""
    import importlib

    for name in WARM_MODULES:
        importlib.import_module(name)


def main(argv: list[str]) -> None:
    _number, parent = argv
    die_with_parent(int(parent))
    import cloudpickle

    channel = parent_channel()
    home = os.getcwd()
    warm_up()
    shared = next_message(channel)
    while shared is not None and (message := next_message(channel)) is not None:
        returned = run_handed_job(message, shared, home)
        try:
            channel.send_bytes(cloudpickle.dumps(returned))
        except OSError:  # the parent stopped listening (it is stopping): nothing more to do
            break
    # Out without the interpreter's teardown, which with torch loaded took 6 s (30 s on a
    # loaded machine) of the sweep's time: every job's files are written and synced by now.
    leave(0)


if __name__ == "__main__":
    main(sys.argv[1:])
