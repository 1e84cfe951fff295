"""``launcher=joblib``: each job of a sweep in a fresh process of its own, ``n_jobs`` at a time.

Why not Hydra's joblib launcher, which this preset used to select: its loky pool treats
one dead worker (SIGKILL, the out-of-memory killer) as a broken pool, kills every other
worker with it and ends the whole batch in ``TerminatedWorkerError``, with no job recorded.
Here the parent starts one ``python -P -m dq.sweep.worker`` per job and watches each
process: a process that dies fails its own job only, recorded from here (its run.json
where it has one, its sweep_job.json, hence sweep.json and jobs.csv) as ``worker killed by
SIGKILL``, and the other jobs go on. Each job process dies with this one
(``dq.sweep.worker.die_with_parent``) and caps its OpenMP/BLAS threads at cores ÷ jobs at
once, as loky did. The price of a fresh process per job is its start (Python and torch
imports, about 2 s); in return each job's memory goes back to the system when it ends.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, open_dict

from dq.errors import DQUserError
from dq.sweep.job import record_lost_job
from dq.sweep.outcome import JobOutcome
from dq.sweep.outcome import JobStatus as Outcome

log = logging.getLogger(__name__)

# What loky set in each worker: the thread pools of OpenMP and the BLAS libraries.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
POLL_S = 0.2  # how often the parent looks for ended job processes
STOP_WAIT_S = 30  # how long stopped job processes get to record themselves before SIGKILL


@dataclass
class _Job:
    """One job's process as the parent follows it."""

    idx: int
    overrides: list[str]
    process: subprocess.Popen
    result: Path


def jobs_at_once(n_jobs: int) -> int:
    """joblib's meaning of ``n_jobs``: a count, or -1 for one per CPU core, -2 for all but one."""
    if n_jobs == 0:
        raise DQUserError(
            "hydra.launcher.n_jobs must be a number of jobs at once (1, 2, ...) or -1 for one per CPU core "
            "(-2 all cores but one), got 0"
        )
    cores = os.cpu_count() or 1
    return n_jobs if n_jobs > 0 else max(cores + 1 + n_jobs, 1)


def worker_env(at_once: int) -> dict[str, str]:
    """This process's environment, with each thread variable the user did not set at cores ÷ jobs."""
    share = str(max((os.cpu_count() or 1) // at_once, 1))
    return {**dict.fromkeys(THREAD_VARS, share), **os.environ}


def launch(
    context: Any,
    config: DictConfig,
    task: Any,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    n_jobs: int,
) -> list[JobReturn]:
    """Run the batch, at most ``n_jobs`` processes at once; Hydra's JobReturn per job, in order."""
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    at_once = max(min(jobs_at_once(n_jobs), len(job_overrides)), 1)
    log.info(f"Launching {len(job_overrides)} jobs, each in its own process, {at_once} at once")
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
    shared = (context, config, task, Singleton.get_state())
    returns: dict[int, JobReturn] = {}
    with tempfile.TemporaryDirectory(prefix="dq-sweep-") as scratch:
        pending = deque(enumerate(job_overrides, start=initial_job_idx))
        running: list[_Job] = []
        try:
            while pending or running:
                while pending and len(running) < at_once:
                    idx, overrides = pending.popleft()
                    running.append(_start(idx, list(overrides), shared, Path(scratch), worker_env(at_once)))
                ended = [job for job in running if job.process.poll() is not None]
                if not ended:
                    time.sleep(POLL_S)
                for job in ended:
                    running.remove(job)
                    returns[job.idx] = _collect(job, context, config)
        finally:
            _stop(running)
    return [returns[idx] for idx in sorted(returns)]


def worker_command(idx: int, payload: Path, result: Path) -> list[str]:
    """The command line of job ``idx``'s process: ``-P`` keeps the directory the sweep
    started in off its ``sys.path`` (``-m`` would put it first)."""
    return [sys.executable, "-P", "-m", "dq.sweep.worker", str(idx), str(payload), str(result), str(os.getpid())]


def _start(idx: int, overrides: list[str], shared: tuple, scratch: Path, env: dict[str, str]) -> _Job:
    payload, result = scratch / f"{idx}.job", scratch / f"{idx}.result"
    payload.write_bytes(cloudpickle.dumps((idx, overrides, *shared)))
    process = subprocess.Popen(worker_command(idx, payload, result), env=env, stdin=subprocess.DEVNULL)
    return _Job(idx, overrides, process, result)


def _collect(job: _Job, context: Any, config: DictConfig) -> JobReturn:
    """The JobReturn the job's process left, or, when it died first, its job recorded as failed."""
    if job.result.is_file():
        return cloudpickle.loads(job.result.read_bytes())
    code = job.process.returncode
    reason = f"worker killed by {signal.Signals(-code).name}" if code < 0 else f"worker exited with code {code}"
    return _lost(job, reason, context, config)


def _lost(job: _Job, reason: str, context: Any, config: DictConfig) -> JobReturn:
    """Record a job whose process died as failed with ``reason``, in its own directory, and
    hand the sweeper a failed JobOutcome for it (as the job function would have)."""
    sweep_config = context.config_loader.load_sweep_config(config, job.overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.num = job.idx
    job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    overrides = [str(item) for item in sweep_config.hydra.overrides.task]
    record_lost_job(Path(str(sweep_config.hydra.sweep.dir)), job_dir, job.idx, overrides, reason)
    outcome = JobOutcome(Outcome.failed, str(job_dir), {}, reason, tuple(overrides))
    return JobReturn(
        overrides=overrides,
        cfg=sweep_config,
        hydra_cfg=sweep_config,
        working_dir=str(job_dir),
        task_name=str(sweep_config.hydra.job.name),
        status=JobStatus.COMPLETED,  # the job function's contract: failures are outcomes
        _return_value=outcome,
    )


def _stop(running: list[_Job]) -> None:
    """The parent leaves early (Ctrl-C, an error): SIGTERM each job still running, which a
    training run answers by writing last.pt and stopping; SIGKILL what is left after
    STOP_WAIT_S."""
    for job in running:
        if job.process.poll() is None:
            job.process.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for job in running:
        try:
            job.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
