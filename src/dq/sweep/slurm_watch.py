"""Telling that a SLURM job ended without a result, on a cluster without accounting.

submitit learns a job's state from ``sacct``. Where accounting is off (no slurmdbd), sacct
fails, submitit logs "Bypassing sacct error" and keeps the state UNKNOWN, and waits for the
job's result file: a job killed outright (SIGKILL, the OOM killer, a node that died) never
writes one, so ``dq-train -m`` would wait for ever. ``SqueueWatcher`` asks ``squeue``
instead when sacct fails: a job squeue shows in a final state, or no longer lists at all
(slurmctld forgets ended jobs after MinJobAge), has ended. A job that ended any other way
than COMPLETED is reported ended only once every other job of the sweep ended too, so the
job directories are final when submitit then raises (``UncompletedJobError``, after its
15 s wait for a result file) and dq ends the sweep with one line per lost job
(``dq.sweep.callback.end_lost_sweep``). The state is asked for at least every
``POLL_S`` seconds, so a lost job ends the sweep within about a minute of the last job.

Nothing here runs unless the launcher is submitit's SLURM one (``install`` is called by the
sweep callback); submitit is imported then, not before.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dq.rundir.layout import RUN_JSON
from dq.rundir.lock import DirectoryBusy, DirectoryLock
from dq.rundir.read import read_json
from dq.rundir.record import now_iso
from dq.rundir.write import write_json
from dq.sweep.jobdir import JOB_ACTION_JSON

POLL_S = 30  # the longest wait between two state queries (submitit's default: 600 s)
VANISHED = "VANISHED"  # squeue no longer lists the job: it ended, no matter how
# squeue's states of a job that will not run again (a requeued job is PENDING, not here).
# A pending job's reasons that no wait cures: the request exceeds what the partition's nodes
# have (more CPUs or memory than a node, GPUs on nodes without any). dq cancels such a job.
NEVER_RUNS = {
    "PartitionConfig": "exceeds what the partition's nodes have",
    "BadConstraints": "is met by no node of the partition",
}
NODES = "sinfo -N -o '%N %c %m %G' lists them"
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", VANISHED}

_watcher: Any = None  # the SqueueWatcher installed in this process, if any


def is_slurm(config: DictConfig) -> bool:
    """Whether the sweep runs through hydra-submitit-launcher's SLURM launcher."""
    target = str(config.hydra.get("launcher", {}).get("_target_", ""))
    return target.endswith("submitit_launcher.SlurmLauncher")


def install(config: DictConfig) -> None:
    """Make submitit's SLURM jobs ask squeue where sacct fails (a SLURM sweep only)."""
    global _watcher
    if not is_slurm(config):
        return
    from submitit.slurm.slurm import SlurmJob

    _watcher = _squeue_watcher_class()(delay_s=POLL_S)
    SlurmJob.watcher = _watcher  # a class attribute: submitit's one watcher for all SLURM jobs


def lost_jobs() -> dict[str, str]:
    """The SLURM jobs this process saw end other than COMPLETED: ``{"12_1": "FAILED"}``."""
    return dict(_watcher.lost) if _watcher is not None else {}


def lost_text() -> str:
    """``12_0: FAILED, 12_1: cancelled: ...``: the lost jobs for a message."""
    return ", ".join(f"{job}: {state}" for job, state in sorted(lost_jobs().items()))


def refused() -> bool:
    """Whether a job was cancelled because it could never start (``NEVER_RUNS``)."""
    return any(state.startswith("cancelled") for state in lost_jobs().values())


def _squeue_states(job_ids: set[str]) -> dict[str, tuple[str, str, str]] | None:
    """Each job's state, reason and request as squeue has them, array tasks one by one
    (``{"12_1": ("PENDING", "PartitionConfig", "cpus=3 mem=2G gres=N/A")}``); None when
    squeue cannot answer (slurmctld down or busy: nothing is learnt)."""
    command = ["squeue", "--me", "--noheader", "--array", "--states=all", "--format=%i|%T|%r|%C|%m|%b"]
    try:
        output = subprocess.check_output(command, text=True, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.strip().split("|") for line in output.splitlines()]
    known = {row[0]: (row[1], row[2], f"cpus={row[3]} mem={row[4]} gres={row[5]}") for row in rows if len(row) == 6}
    return {job: known.get(job, (VANISHED, "", "")) for job in job_ids}


def _cancel(job_id: str) -> None:
    """scancel a job that can never start (it would wait in the queue for ever)."""
    subprocess.run(["scancel", job_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)


def _squeue_watcher_class() -> type:
    """SqueueWatcher, defined once submitit is imported."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class SqueueWatcher(SlurmInfoWatcher):
        """submitit's SLURM watcher that asks squeue when sacct fails (no accounting)."""

        def __init__(self, delay_s: int) -> None:
            super().__init__(delay_s=delay_s)
            self.lost: dict[str, str] = {}

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            try:
                self._output = subprocess.check_output(command, stderr=subprocess.DEVNULL, timeout=60)
                self._info_dict.update(self.read_info(self._output))
            except (OSError, subprocess.SubprocessError):
                self._info_dict.update(self._from_squeue())
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def _from_squeue(self) -> dict[str, dict[str, str]]:
            """States as sacct's would read; a job that ended without COMPLETED waits as
            RUNNING while another job of the sweep still lives."""
            found = _squeue_states(self._registered - self._finished)
            if found is None:
                return {}
            states = {}
            for job, (state, reason, request) in found.items():
                if state == "PENDING" and reason in NEVER_RUNS:
                    _cancel(job)
                    self.lost[job] = (
                        f"cancelled: pending for {reason}: its request ({request}) {NEVER_RUNS[reason]} ({NODES})"
                    )
                    state = "CANCELLED"
                elif state in ENDED and state != "COMPLETED":
                    self.lost.setdefault(job, state)
                states[job] = state
            live = {job for job, state in states.items() if state not in ENDED}
            held = lambda job, state: "RUNNING" if live and job in self.lost else state  # noqa: E731
            return {job: {"JobID": job, "State": held(job, state)} for job, state in states.items()}

    return SqueueWatcher


def is_lost_job(error: BaseException) -> bool:
    """Whether ``error`` is submitit's word for a job that ended without a result."""
    return type(error).__name__ == "UncompletedJobError" and type(error).__module__.startswith("submitit")


def mark_lost_jobs(sweep_dir: Path, invocation: str | None) -> int:
    """Record as failed each job of this invocation that ended without a word: its run.json
    still says ``running``, no process holds its lock, and it wrote no sweep_job.json. Its
    checkpoints stay: re-running the sweep into its directory resumes it from last.pt.
    Returns how many were marked."""
    lost = lost_text()
    ended = f"its SLURM job ended without a result ({lost})" if lost else "its submitit job ended without a result"
    error = (
        f"{ended}: killed outright (SIGKILL, the OOM killer, a lost node); "
        f"re-run the sweep into {sweep_dir} to resume it from last.pt"
    )
    marked = 0
    for job_dir in sorted(path for path in Path(sweep_dir).iterdir() if path.is_dir() and path.name.isdigit()):
        if _was_lost(job_dir, invocation):
            overrides = _read(job_dir / RUN_JSON).get("overrides") or []
            record = {"invocation": invocation, "action": "lost", "status": "failed", "error": error}
            write_json(job_dir / JOB_ACTION_JSON, {**record, "overrides": overrides, "at": now_iso()})
            marked += 1
    return marked


def _read(path: Path) -> dict[str, Any]:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return {}


def _was_lost(job_dir: Path, invocation: str | None) -> bool:
    if _read(job_dir / RUN_JSON).get("status") != "running":
        return False
    if _read(job_dir / JOB_ACTION_JSON).get("invocation") == invocation:
        return False  # the job said what it did
    lock = DirectoryLock(job_dir, "cannot mark")
    try:
        lock.acquire()
    except DirectoryBusy:
        return False  # alive after all (a job still running elsewhere)
    lock.release()
    return True
