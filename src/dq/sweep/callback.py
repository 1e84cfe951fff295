"""The Hydra callback that frames a sweep (``hydra.callbacks.sweep`` in conf/config.yaml).

Hydra instantiates it on every dq-train start, single runs included, so it imports
nothing heavy. At a sweep's start it writes sweep.json with the planned jobs; at the end
it writes sweep.json and jobs.csv from the job directories, prints the totals and the
failed jobs, writes the report of the jobs (summary.csv/.md/.tex and plots/, by
dq.report.build; a failure there is one stderr line), says how to get a job's own report
when the jobs deferred it (``report.per_run=auto``), and leaves the exit code for ``dq.cli`` (1 when a job failed, 75 when one
was interrupted or never started: a scheduler can requeue on 75; 130 when that was Ctrl-C). It holds the sweep
directory's lock from start to end, so a second invocation of the same sweep while the
first runs stops with one line.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dq.engine import preemption
from dq.errors import EXIT_BY_USER, DQUserError, first_line
from dq.rundir.claim import ClaimRefused, claim, leftover_of_unstarted, output_dir_of, recorded_sweep
from dq.rundir.layout import MULTIRUN_YAML, RUN_JSON
from dq.rundir.lock import LOCK_FILE, DirectoryLock
from dq.rundir.record import now_iso
from dq.rundir.write import write_json
from dq.sweep import slurm_watch
from dq.sweep.jobdir import same_job
from dq.sweep.processes import close_workers
from dq.sweep.slurm_request import RequestRefused, check_gpus
from dq.sweep.summary import JOBS_CSV, NOT_STARTED, SWEEP_JSON, fail_sweep, finish_sweep, read_sweep, start_sweep

# The Optuna sweeper's default storage file in the sweep directory (src/hydra_plugins/dq_optuna_sweeper).
OPTUNA_DB = "optuna.db"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: try again (re-run into the same hydra.sweep.dir)

EXIT_REFUSED = 2  # a SLURM request no node can meet (dq.sweep.slurm_watch): the user's input

_exit_code = 0
_sweep_lock: DirectoryLock | None = None  # this invocation's hold on its sweep directory
# The sweep this process started, and the sweep.json it replaced (a re-run's), so a sweep
# refused before any job ran leaves nothing behind.
_started: tuple[Path, dict[str, Any]] | None = None


def sweep_exit_code() -> int:
    """The exit code the last sweep in this process asks for (0: every job succeeded)."""
    return _exit_code


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each job's overrides, in job-number order, as Hydra's BasicSweeper will run them;
    None for another sweeper (Optuna decides its trials as it goes)."""
    if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += [str(item) for item in config.hydra.overrides.task]
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def exit_code_for(counts: dict[str, int]) -> int:
    """1 when a job failed; else 130 when Ctrl-C stopped the sweep, 75 when a job was
    interrupted or never started otherwise; else 0."""
    if counts.get("failed"):
        return EXIT_JOB_FAILED
    if counts.get("interrupted") or counts.get(NOT_STARTED) or counts.get("running"):
        return EXIT_BY_USER if preemption.by_user() else EXIT_INTERRUPTED
    return 0


def report(sweep: dict[str, Any], sweep_dir: Path) -> None:
    """The totals on stdout; each failed job, with its overrides and error, on stderr."""
    counts, actions = sweep["counts"], sweep["actions"]
    done = counts.get("completed", 0) + counts.get("skipped", 0)
    statuses = ", ".join(
        f"{counts.get(key, 0)} {key.replace('_', ' ')}" for key in ("failed", "interrupted", NOT_STARTED)
    )
    did = ", ".join(f"{actions.get(key, 0)} {key}" for key in ("ran", "skipped", "resumed", "reran"))
    print(f"sweep: {done}/{counts['total']} done, {statuses} ({did}); {sweep_dir / SWEEP_JSON}", flush=True)
    for job in sweep["jobs"]:
        if job["status"] == "failed":
            overrides = " ".join(job["overrides"]) or "(no overrides)"
            print(f"dq-train: failed job {job['job']} ({overrides}): {job['error']}", file=sys.stderr, flush=True)
    if counts.get("interrupted"):
        print(interrupted_line(counts), file=sys.stderr, flush=True)


def interrupted_line(counts: dict[str, int]) -> str:
    """The one stderr line of a stopped sweep: what stopped it and how to go on."""
    by = f"stopped by {preemption.received_signal()}" if preemption.stop_requested() else "stopped"
    return (
        f"dq-train: interrupted: sweep {by}, {counts['interrupted']} job(s) interrupted or not started; "
        "run the same command again to resume them"
    )


class SweepSummary(Callback):
    """sweep.json, jobs.csv and the report at the sweep root; the sweep's exit code."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_code, _started
        _exit_code = 0
        try:
            sweep_dir = output_dir_of(config, "hydra.sweep.dir")  # absolute: the cwd may change before abandon_sweep
        except DQUserError as error:
            raise ClaimRefused(error) from None
        hold_sweep(sweep_dir, [str(item) for item in config.hydra.overrides.task])
        _started = (sweep_dir, read_sweep(sweep_dir))
        invocation = f"{now_iso()}/{os.getpid()}/{secrets.token_hex(4)}"
        start_sweep(sweep_dir, planned_jobs(config), invocation)
        slurm_watch.install(config)  # SLURM without accounting: see a job killed outright
        try:
            check_gpus(config)  # GPUs the partition lacks: one line, not sbatch's two
        except RequestRefused as refused:
            fail_sweep(sweep_dir, str(refused))
            _started = None
            release_sweep()
            raise RequestRefused(f"{refused} ({sweep_dir / SWEEP_JSON})") from None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_code
        _exit_code = EXIT_JOB_FAILED  # stays so if gathering the results fails (Hydra only warns)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep = finish_sweep(sweep_dir)
        report(sweep, sweep_dir)
        _exit_code = exit_code_for(sweep["counts"])
        write_sweep_report(sweep, sweep_dir)
        if (line := deferred_reports_line(config, sweep)) is not None:
            print(line, flush=True)
        close_workers()
        release_sweep()


def hold_sweep(sweep_dir: Path, overrides: list[str] | None = None) -> None:
    """Claim the sweep directory for this invocation (``dq.rundir.claim``: its lock, held to
    the end) before Hydra writes multirun.yaml there, or stop with one line (exit 2): when
    another live ``dq-train -m`` holds it (two invocations of one sweep at once would
    overwrite each other's sweep.json and jobs.csv), when it holds another sweep (other
    ``overrides``, the launcher aside) or anything but a sweep, or cannot be a directory.
    The same sweep again (``overrides`` as recorded) finishes it."""
    global _sweep_lock
    release_sweep()  # an earlier sweep in this process that ended without on_multirun_end

    def same(directory: Path) -> bool:
        recorded = recorded_sweep(directory)
        if recorded is None:  # no job ever started here (Hydra writes multirun.yaml first): a
            # sweep killed before that left its sweep.json, one refused then (a SLURM request no
            # node meets) its jobs.csv too; an Optuna study made ahead is welcome
            unstarted = (SWEEP_JSON, JOBS_CSV, OPTUNA_DB)
            return all(leftover_of_unstarted(name) or name in unstarted for name in os.listdir(directory))
        return overrides is not None and same_job(recorded, overrides)

    try:
        _sweep_lock = claim(sweep_dir, "hydra.sweep.dir", "cannot sweep into", same)
    except DQUserError as error:
        raise ClaimRefused(error) from None


def release_sweep() -> None:
    global _sweep_lock
    if _sweep_lock is not None:
        _sweep_lock.release()
        _sweep_lock = None


def write_sweep_report(sweep: dict[str, Any], sweep_dir: Path) -> None:
    """summary.csv/.md/.tex and plots/ of the sweep's jobs at its root (dq.report.build).

    Runs after sweep.json and the exit code are settled: whatever goes wrong here is one
    line on stderr and changes neither (``dq-report <sweep dir>`` makes it again)."""
    try:
        from dq.report.build import write_report
        from dq.report.collect import read_run

        job_dirs = [Path(job["run_dir"]) for job in sweep["jobs"]]
        runs = [read_run(job_dir) for job_dir in job_dirs if (job_dir / RUN_JSON).is_file()]
        if not runs:  # no job started: nothing to report
            return
        done = write_report(runs, sweep_dir)
    except Exception as error:  # a report is a convenience: it must not fail the sweep
        print(
            f"dq-train: sweep report not written: {type(error).__name__}: {first_line(str(error))}",
            file=sys.stderr,
            flush=True,
        )
        return
    print(f"sweep: report in {done.files[1]}", flush=True)


def deferred_reports_line(config: DictConfig, sweep: dict[str, Any]) -> str | None:
    """The line that says where a job's own report.html and model_card.md are when the
    jobs left them out (``report.per_run=auto``, dq.runner.report_deferred); None when
    they wrote them, or when no report was asked for."""
    report = config.get("report") or {}
    if str(report.get("per_run", "auto")) != "auto" or not (report.get("html") or report.get("model_card")):
        return None
    if not sweep["jobs"]:
        return None
    example = sweep["jobs"][0]["run_dir"]
    return (
        "sweep: a job's own report.html and model_card.md are left to dq-report "
        f"(report.per_run=auto), e.g. dq-report {example}"
    )


def fail_started_sweep(error: BaseException) -> str | None:
    """When the sweep this process started is still ``running`` (its launcher raised: no
    ``sbatch``, a refused submission), record it ``failed`` with the error and return the
    line to print; None when no sweep of this process is under way."""
    global _started
    if _started is None or read_sweep(_started[0]).get("status") != "running":
        return None
    sweep_dir, _ = _started
    _started = None
    reason = f"{type(error).__name__}: {first_line(str(error))}" if str(error).strip() else type(error).__name__
    fail_sweep(sweep_dir, reason)
    release_sweep()
    return f"sweep failed: {reason} ({sweep_dir / SWEEP_JSON})"


def end_lost_sweep(error: BaseException) -> int | None:
    """The sweep's exit code after the launcher gave up on a SLURM job that ended without a
    result (``dq.sweep.slurm_watch``): such jobs are recorded as failed with one line each,
    and the sweep ends as ``on_multirun_end`` ends it. None for any other error."""
    global _exit_code
    if _started is None or not slurm_watch.is_lost_job(error):
        return None
    sweep_dir = _started[0]
    if not slurm_watch.mark_lost_jobs(sweep_dir, read_sweep(sweep_dir).get("invocation")):
        lost = slurm_watch.lost_text() or first_line(str(error))  # lost before its job began
        print(f"dq-train: error: SLURM job ended before its sweep job began ({lost})", file=sys.stderr, flush=True)
    sweep = finish_sweep(sweep_dir)
    report(sweep, sweep_dir)
    _exit_code = EXIT_REFUSED if slurm_watch.refused() else exit_code_for(sweep["counts"]) or EXIT_JOB_FAILED
    write_sweep_report(sweep, sweep_dir)
    release_sweep()
    return _exit_code


def abandon_sweep() -> None:
    """Undo a sweep's start when Hydra refused it before any job ran (a bad override in
    one job's composition): put back the sweep.json a re-run replaced, or remove the files
    the start wrote (sweep.json, Hydra's multirun.yaml) and the then empty directory."""
    global _started
    if _started is None:
        return
    sweep_dir, before = _started
    _started = None
    if before:
        write_json(sweep_dir / SWEEP_JSON, before)
        release_sweep()
        return
    if not sweep_dir.is_dir() or any(path.is_dir() and path.name.isdigit() for path in sweep_dir.iterdir()):
        release_sweep()
        return
    for name in (SWEEP_JSON, MULTIRUN_YAML, LOCK_FILE):  # the lock file goes while still held
        (sweep_dir / name).unlink(missing_ok=True)
    release_sweep()
    with suppress(OSError):
        sweep_dir.rmdir()
