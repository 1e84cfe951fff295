"""Telling, inside a submitit SLURM job that was stopped, whether SLURM itself requeued it.

``scontrol requeue`` (and pre-emption with ``PreemptMode=REQUEUE``) sends the job SIGCONT
and SIGTERM, then runs it again under the same job id. submitit only logs SIGTERM
("Bypassing signal SIGTERM"), so a sweep job that dq stopped and recorded ``interrupted``
would return normally and submitit would write that outcome as the job's result: the
launcher then ends the sweep with exit 75 while SLURM starts the job again, unwatched. A job
that SLURM requeues must instead leave without a result (as submitit does after its own
requeue on SIGUSR2), so the launcher keeps waiting for the requeued run, which resumes from
last.pt and hands back the result.

``scancel`` sends the same SIGTERM, so the signal says nothing; slurmctld does: a requeue
adds one to the job's ``Restarts`` before signalling it, and each run starts with the count
it had in ``SLURM_RESTART_COUNT`` (unset on the first).
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import NoReturn

from dq.errors import EXIT_TRY_AGAIN


def requeued_by_slurm() -> bool:
    """Whether this process is a submitit SLURM job that slurmctld has requeued since it
    started (False outside one, and when scontrol cannot answer: the result is then handed
    back as before)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or not job_id:
        return False
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    found = re.search(r"\bRestarts=(\d+)", shown)
    return found is not None and int(found.group(1)) > int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def leave_for_the_requeued_job() -> NoReturn:
    """Exit this SLURM job without a result (``SystemExit`` passes through submitit's
    ``except Exception``, as its own requeue's exit does), for the requeued run to give one."""
    print("sweep job: SLURM requeued this job; it resumes from last.pt when it runs again", flush=True)
    raise SystemExit(EXIT_TRY_AGAIN)
