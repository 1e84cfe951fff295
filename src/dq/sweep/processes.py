"""``launcher=joblib``: a sweep's jobs in at most ``n_jobs`` worker processes of dq's own,
each running one job after another as this process hands them over.

Why not Hydra's joblib launcher, which this preset used to select: its loky pool treats
one dead worker (SIGKILL, the out-of-memory killer) as a broken pool, kills every other
worker with it and ends the whole batch in ``TerminatedWorkerError``, with no job recorded.
Here the parent starts each ``python -P -m dq.sweep.worker`` itself, talks to it over a
socket on its standard input (a job's number and overrides in, Hydra's ``JobReturn`` out,
as framed messages) and watches it: a worker that dies (its socket ends, a ``JobReturn``
cut off half way included) fails the job it was running only, recorded from here (its
run.json where it has one, its sweep_job.json, hence sweep.json and jobs.csv) as ``worker
killed by SIGKILL``; the next job that needs a worker starts a new one, and the other
workers go on. Workers die with this process (``dq.sweep.worker.die_with_parent``) and cap
their OpenMP/BLAS threads at cores ÷ jobs at once, as loky did; when this process stops
early (Ctrl-C, an error) it SIGTERMs the workers' running jobs, which record themselves
``interrupted``, and SIGKILLs what is left after STOP_WAIT_S.

A worker keeps Python, torch and dq imported between its jobs, so a job after a worker's
first pays no start-up (about 2 s of imports on 2 cores); what could change a job's result
is reset for each job (``dq.sweep.worker``): a job's metrics are those it gives alone. The
workers also outlive their batch when the next batch is of the same sweep (an Optuna search
launches one batch per ``hydra.sweeper.n_jobs`` trials): they are kept idle and end with the
sweep (``close_workers``), so a worker's memory goes back to the system then, not after each job.

The workers of a sweep's first batch start early: when Hydra sets the launcher up
(``start_early``), before the sweeper composes and checks every job's config, and each
imports what a job needs while it waits for its first job (``dq.sweep.worker.warm_up``). A
worker started early is used only when it was started with the environment a worker would
be started with then (the same thread share: as many jobs at once); one left over (a sweep
stopped before its first batch) ends with the sweep, or with this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, open_dict

from dq.engine import preemption
from dq.errors import DQUserError
from dq.sweep.job import record_lost_job
from dq.sweep.outcome import JobOutcome
from dq.sweep.outcome import JobStatus as Outcome

log = logging.getLogger(__name__)

# What loky set in each worker: the thread pools of OpenMP and the BLAS libraries.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
POLL_S = 0.2  # how long the parent waits for a job to end before looking again
STOP_WAIT_S = 30  # how long stopped workers get to record their jobs before SIGKILL


@dataclass
class _Job:
    """One job of the batch: Hydra's job number and its overrides."""

    idx: int
    overrides: list[str]


@dataclass
class _Worker:
    """One worker process as the parent follows it, and the job it runs (None: idle)."""

    process: subprocess.Popen
    channel: Connection
    job: _Job | None = None


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
    """Run the batch in at most ``n_jobs`` workers; Hydra's JobReturn per job, in order."""
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    at_once = max(min(jobs_at_once(n_jobs), len(job_overrides)), 1)
    pool = _pool_for(at_once, cloudpickle.dumps((context, config, task, Singleton.get_state())))
    if pool.workers:
        ready = " (kept from the last batch)"
    else:
        early = sum(1 for env, _ in _early if env == pool.env)
        ready = f" ({early} started early)" if early else ""
    log.info(f"Launching {len(job_overrides)} jobs in {at_once} worker processes{ready}")
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
    returns: dict[int, JobReturn] = {}
    pending = deque(_Job(idx, list(overrides)) for idx, overrides in enumerate(job_overrides, start=initial_job_idx))
    passed_on = False
    try:
        while pending or pool.busy():
            if preemption.stop_requested() and not passed_on:  # dq-train itself was stopped (dq.cli)
                passed_on = True
                pending.clear()  # never started: the re-run of the sweep starts them
                pool.pass_on(signal.Signals[preemption.received_signal() or "SIGTERM"])
            while pending and pool.has_room():
                job = pending.popleft()
                lost = pool.hand_over(job)
                if lost is not None:
                    returns[job.idx] = _lost(job, lost, context, config)
            for job, returned in pool.finished():
                returns[job.idx] = (
                    returned if isinstance(returned, JobReturn) else _lost(job, returned, context, config)
                )
    except BaseException:
        pool.stop()
        raise
    if passed_on:
        pool.stop()
    else:
        _keep(pool)
    return [returns[idx] for idx in sorted(returns)]


# The last batch's workers, idle, for the sweep's next batch (an Optuna search launches one
# batch of hydra.sweeper.n_jobs trials at a time): a new worker costs its imports again
# (torch, dq, and torch._dynamo, which torch's optimizers import: about 4 s of CPU).
_kept: _Pool | None = None


def _pool_for(at_once: int, shared: bytes) -> _Pool:
    """The kept workers when they run this very sweep part (the same pickled context, config,
    task and Hydra state, the same thread share), else a new pool (the kept one stopped)."""
    global _kept
    pool, _kept = _kept, None
    if pool is not None and pool.at_once == at_once and pool.shared == shared:
        return pool
    if pool is not None:
        pool.stop()
    return _Pool(at_once, shared)


def _keep(pool: _Pool) -> None:
    global _kept
    _kept = pool


# Workers started before the first batch (``start_early``), idle and sent nothing yet, each
# with the environment it was started with; ``_Pool._start`` takes one whose environment
# (the thread share included) is the one it would start a worker with.
_early: list[tuple[dict[str, str], _Worker]] = []


def start_early(config: DictConfig, n_jobs: int) -> None:
    """Start the first batch's workers now, while the sweeper composes and checks every
    job's config (about 0.15 s a job): they import torch, dq and what a job needs meanwhile.
    Called from the launcher's setup. Only as many as that batch will use, which is known
    here for Hydra's basic sweeper and dq's Optuna search; for another sweeper, none. Any
    left by an earlier sweep of this process (one stopped before its first batch) end first."""
    _end_early()
    size = first_batch_size(config)
    if not size or n_jobs == 0:  # n_jobs 0 is refused when the batch launches
        return
    at_once = max(min(jobs_at_once(n_jobs), size), 1)
    env = worker_env(at_once)
    _early.extend((env, _spawn(number, env)) for number in range(at_once))


def _end_early() -> None:
    """End the workers started early and never used: they hold no job, so SIGKILL loses
    nothing and does not wait for their imports to finish."""
    for _, worker in _early:
        worker.channel.close()
        worker.process.kill()
        worker.process.wait()
    _early.clear()


def first_batch_size(config: DictConfig) -> int | None:
    """How many jobs the sweep's first batch holds, from its sweeper's settings: the basic
    sweeper's grid as it splits it (its own ``split_arguments``), dq's Optuna search's
    ``n_jobs`` trials at a time; None for any other sweeper."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    if target.endswith(".DQOptunaSweeper"):
        try:
            return max(min(int(sweeper.n_jobs), int(sweeper.n_trials)), 0)
        except (TypeError, ValueError):  # the search refuses it in one line
            return None
    if not target.endswith(".BasicSweeper"):
        return None
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    try:
        overrides = OverridesParser.create().parse_overrides([*params, *config.hydra.overrides.task])
        batches = BasicSweeper.split_arguments(overrides, sweeper.get("max_batch_size"))
    except (HydraException, ValueError, AssertionError):  # the sweeper says what is wrong, in one line
        return None
    return len(batches[0]) if batches else 0


def close_workers() -> None:
    """End the workers kept for a next batch, and any started early and never used: the
    sweep is over (``dq.sweep.callback``). Idle workers end as soon as their channel
    closes; they also die with this process."""
    global _kept
    if _kept is not None:
        _kept.stop()
        _kept = None
    _end_early()


def worker_command(number: int) -> list[str]:
    """The command line of worker ``number``: ``-P`` keeps the directory the sweep started
    in off its ``sys.path`` (``-m`` would put it first)."""
    return [sys.executable, "-P", "-m", "dq.sweep.worker", str(number), str(os.getpid())]


class _Pool:
    """At most ``at_once`` worker processes, started as jobs need them, each running the
    jobs handed to it one after another. A worker that dies loses its own job only; the
    next job that needs a worker starts a new one."""

    def __init__(self, at_once: int, shared: bytes) -> None:
        self.at_once = at_once
        self.shared = shared  # Hydra's context, the sweep config, the task, Hydra's global state
        self.env = worker_env(at_once)
        self.workers: list[_Worker] = []
        self.started = 0

    def busy(self) -> bool:
        return any(worker.job is not None for worker in self.workers)

    def has_room(self) -> bool:
        """Whether a job can start now: an idle worker, or fewer than ``at_once``. A worker
        that ended while idle (killed between jobs) is dropped first: it had no job to lose."""
        for worker in [worker for worker in self.workers if worker.job is None and worker.process.poll() is not None]:
            self._drop(worker)
        return any(worker.job is None for worker in self.workers) or len(self.workers) < self.at_once

    def pass_on(self, signum: signal.Signals) -> None:
        """The stop signal dq-train got (a scheduler signals that process alone, not its
        group) to each worker running a job: the job stops after its batch, writes last.pt
        and is recorded ``interrupted``, as it would be in dq-train's own process."""
        for worker in self.workers:
            if worker.job is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)

    def hand_over(self, job: _Job) -> str | None:
        """Give ``job`` to an idle worker, or to a new one (sent the shared part first); None,
        or the reason the job is lost when the worker died before taking it."""
        message = cloudpickle.dumps((job.idx, job.overrides))
        worker = next((worker for worker in self.workers if worker.job is None), None)
        messages = [message] if worker is not None else [self.shared, message]
        worker = worker or self._start()
        worker.job = job
        try:
            for part in messages:
                worker.channel.send_bytes(part)
        except OSError:
            return self._bury(worker)
        return None

    def finished(self) -> list[tuple[_Job, JobReturn | str]]:
        """Each job that ended within POLL_S: its JobReturn, or the reason it is lost when
        its worker died first (a JobReturn cut off half way counts as lost)."""
        busy = {worker.channel: worker for worker in self.workers if worker.job is not None}
        ended: list[tuple[_Job, JobReturn | str]] = []
        for channel in wait(list(busy), timeout=POLL_S):
            worker = busy[channel]
            job, worker.job = worker.job, None
            assert job is not None
            try:
                ended.append((job, cloudpickle.loads(channel.recv_bytes())))
            except (EOFError, OSError):
                ended.append((job, self._bury(worker)))
        return ended

    def stop(self) -> None:
        """The batch is over, or the parent leaves early (Ctrl-C, an error): SIGTERM each
        worker still running a job, which a training run answers by writing last.pt and
        stopping, and close every channel (no more jobs: idle workers end at once); SIGKILL
        what is left after STOP_WAIT_S."""
        for worker in self.workers:
            if worker.job is not None and worker.process.poll() is None:
                worker.process.terminate()
            worker.channel.close()
        deadline = time.monotonic() + STOP_WAIT_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def _start(self) -> _Worker:
        """A new worker: one started early with this pool's environment (and still alive),
        else a fresh one."""
        early = next((entry for entry in _early if entry[0] == self.env and entry[1].process.poll() is None), None)
        if early is not None:
            _early.remove(early)
            worker = early[1]
        else:
            worker = _spawn(self.started, self.env)
        self.started += 1
        self.workers.append(worker)
        return worker

    def _drop(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        worker.channel.close()

    def _bury(self, worker: _Worker) -> str:
        """Drop a worker whose channel closed, and say how its process ended."""
        self._drop(worker)
        try:
            code = worker.process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:  # it closed its end without ending: not a worker to keep
            worker.process.kill()
            code = worker.process.wait()
        return f"worker killed by {signal.Signals(-code).name}" if code < 0 else f"worker exited with code {code}"


def _spawn(number: int, env: dict[str, str]) -> _Worker:
    """Worker ``number``, whose standard input is a socket to this process (``dq.sweep.worker``)."""
    ours, theirs = multiprocessing.Pipe()
    try:
        command = worker_command(number)  # an argument list: no shell (tests/test_safety.py)
        process = subprocess.Popen(command, env=env, stdin=theirs.fileno())
    finally:
        theirs.close()
    return _Worker(process, ours)


def _lost(job: _Job, reason: str, context: Any, config: DictConfig) -> JobReturn:
    """Record a job whose worker died as failed with ``reason``, in its own directory, and
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
