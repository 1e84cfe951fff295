"""What one job of a sweep hands back to the sweeper (through Hydra's ``JobReturn``).

A job never raises into Hydra: a failure is recorded in the job's run.json and here, so
the rest of the sweep goes on. The outcome crosses process boundaries (joblib, submitit),
so it holds only plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class JobStatus(StrEnum):
    completed = "completed"  # trained now (or resumed) and finished
    skipped = "skipped"  # already completed in an earlier invocation of the same sweep
    failed = "failed"  # an exception, a non-finite loss, out of memory, bad input
    interrupted = "interrupted"  # stopped by SIGTERM/SIGUSR1 after writing last.pt


@dataclass(frozen=True)
class JobOutcome:
    status: JobStatus
    run_dir: str
    metrics: dict[str, float] = field(default_factory=dict)  # metrics.json, when the job has it
    error: str | None = None  # one line, for failed jobs
    overrides: tuple[str, ...] = ()  # the job's own overrides (Hydra's task overrides)

    @property
    def succeeded(self) -> bool:
        return self.status in (JobStatus.completed, JobStatus.skipped)
