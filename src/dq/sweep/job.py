"""The task function of ``dq-train -m``: one sweep job that never raises into Hydra.

A failure of any kind (bad input, an exception while training, out of memory) is
recorded in the job's run.json as ``failed`` with its error line and handed back as a
failed ``JobOutcome``, so Hydra's launcher goes on with the other jobs. A job of a sweep
re-run into its own ``hydra.sweep.dir`` first looks at what the earlier invocation left
in its directory (``dq.sweep.jobdir.decide``): completed jobs are skipped, interrupted or
dead ones resumed from checkpoints/last.pt, failed ones rerun from scratch. The job holds
its directory's lock (``dq.rundir.lock``) from that decision to its end; a job whose
lock a live process holds is refused with one line naming that process.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dq.engine.preemption import catching_stop_signals, pass_on_stop, stop_requested
from dq.errors import DQUserError, RunInterrupted
from dq.rundir.layout import RUN_JSON
from dq.rundir.lock import DirectoryBusy, DirectoryLock
from dq.rundir.read import metrics_or_empty, run_json_or_none
from dq.rundir.record import RunRecord, now_iso
from dq.rundir.write import write_json
from dq.sweep.jobdir import JOB_ACTION_JSON, Action, clear_results, decide
from dq.sweep.outcome import JobOutcome, JobStatus
from dq.sweep.slurm_requeue import leave_for_the_requeued_job, requeued_by_slurm
from dq.sweep.summary import progress_line, read_sweep


def _train(cfg: DictConfig, run_dir: Path, *, resume: bool) -> dict[str, float]:
    """The one place a sweep job calls the runner (imported here: the callback that
    loads this package runs on every dq-train start, and must stay light)."""
    from dq.runner import train

    return train(cfg, run_dir=run_dir, resume=resume)


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _record_failed(cfg: DictConfig, job_dir: Path, overrides: list[str], error: BaseException) -> None:
    """A job refused before training (or before a resume got going) has no failed
    run.json yet: write one, so the sweep lists the job with its error (its .hydra/
    stays beside it)."""
    seed = cfg.get("seed", 0)
    RunRecord(job_dir, int(seed) if isinstance(seed, int) else 0, overrides=overrides).fail(error)


def _run(cfg: DictConfig, job_dir: Path, overrides: list[str], action: Action, earlier: dict | None) -> JobOutcome:
    def outcome(status: JobStatus, error: str | None = None) -> JobOutcome:
        metrics = metrics_or_empty(job_dir) if status in (JobStatus.completed, JobStatus.skipped) else {}
        return JobOutcome(status, str(job_dir), metrics, error, tuple(overrides))

    if action is Action.skip:
        return outcome(JobStatus.skipped)
    if action is Action.foreign:
        recorded = " ".join((earlier or {}).get("overrides") or [])
        return outcome(JobStatus.failed, f"{job_dir} holds another job's run ({recorded}); use a new hydra.sweep.dir")
    if stop_requested():  # a pre-emption signal stopped this process: start nothing new
        return outcome(JobStatus.interrupted, "not started: the sweep was asked to stop")
    if action is Action.rerun:
        clear_results(job_dir)
    try:
        _train(cfg, job_dir, resume=action is Action.resume)
    except RunInterrupted as error:
        return outcome(JobStatus.interrupted, _error_line(error))
    except Exception as error:  # any failure is this job's, never the sweep's
        line = _error_line(error)
        if isinstance(error, DQUserError):
            line = str(error)
        current = run_json_or_none(job_dir)
        if current is None or current.get("status") != "failed":  # refused before the runner wrote one
            _record_failed(cfg, job_dir, overrides, error)
        return outcome(JobStatus.failed, line)
    return outcome(JobStatus.completed)


def run_job(cfg: DictConfig) -> JobOutcome:
    """Run one sweep job in Hydra's job directory; record and return what happened.

    A stop signal is a stop request from the job's start to its record (in a worker
    process of submitit or joblib too, where no dq-train caught it before); a handler it
    replaced (submitit's, which requeues the job) gets the signal once the job is recorded
    interrupted. A SLURM job that SLURM itself requeued (``scontrol requeue``: SIGTERM, which
    submitit only logs) leaves without a result, so the launcher waits for the requeued run,
    which resumes from last.pt (``dq.sweep.slurm_requeue``)."""
    with catching_stop_signals():
        result = _run_job(cfg)
    if result.status is JobStatus.interrupted:
        pass_on_stop()
        if requeued_by_slurm():
            leave_for_the_requeued_job()
    return result


def _run_job(cfg: DictConfig) -> JobOutcome:
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    sweep_dir = Path(hydra_cfg.sweep.dir)
    overrides = [str(item) for item in hydra_cfg.overrides.task]
    number = hydra_cfg.job.get("num", "?")
    lock = DirectoryLock(job_dir, "cannot run")
    try:
        # Held from the decision to the end: a job that another live process runs (a
        # dq-train resume=, a worker that outlived its sweep) is refused, never touched.
        lock.acquire()
    except DirectoryBusy as busy:
        result = JobOutcome(JobStatus.failed, str(job_dir), {}, str(busy), tuple(overrides))
        _report(sweep_dir, job_dir, number, Action.busy, result)
        return result
    try:
        action, earlier = decide(job_dir, overrides)
        try:
            result = _run(cfg, job_dir, overrides, action, earlier)
        except BaseException as error:  # a signal handler's SystemExit (submitit's requeue) and the like
            status = JobStatus.interrupted if isinstance(error, KeyboardInterrupt | SystemExit) else JobStatus.failed
            result = JobOutcome(status, str(job_dir), {}, _error_line(error), tuple(overrides))
            _report(sweep_dir, job_dir, number, action, result)
            raise
        _report(sweep_dir, job_dir, number, action, result)
    finally:
        lock.release()
    return result


def _report(sweep_dir: Path, job_dir: Path, number: object, action: Action, result: JobOutcome) -> None:
    """Write sweep_job.json and print the job's line and the sweep's progress."""
    write_json(
        job_dir / JOB_ACTION_JSON,
        {
            "invocation": read_sweep(sweep_dir).get("invocation"),
            "action": str(action),
            "status": str(result.status),
            "error": result.error,
            "overrides": list(result.overrides),
            "at": now_iso(),
        },
    )
    what = " ".join(result.overrides) or "(no overrides)"
    did = "skipped (completed earlier)" if action is Action.skip else f"{action}, {result.status}"
    line = f"sweep job {number} ({what}): {did}"
    if result.error:
        line += f": {result.error}"
    print(line, flush=True)
    print(progress_line(sweep_dir), flush=True)


def record_lost_job(sweep_dir: Path, job_dir: Path, number: int, overrides: list[str], reason: str) -> None:
    """A job whose process died under it (SIGKILL, out of memory), recorded by the launcher
    that watched the process: its run.json, when it says ``running``, becomes ``failed``
    with ``reason``, and its sweep_job.json and lines say the same as any failed job's."""
    job_dir.mkdir(parents=True, exist_ok=True)
    run = run_json_or_none(job_dir)
    if run is not None and run.get("status") == "running":
        write_json(job_dir / RUN_JSON, {**run, "status": "failed", "end": now_iso(), "error": reason})
    result = JobOutcome(JobStatus.failed, str(job_dir), {}, reason, tuple(overrides))
    _report(sweep_dir, job_dir, number, Action.run, result)
