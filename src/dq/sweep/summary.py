"""A sweep's results, gathered from its job directories: sweep.json, jobs.csv (one row per
job) and the progress line. The grouped mean ± std report (summary.csv/.md/.tex) is
dq.report's, written by the callback after these.

Everything is read from disk (``<sweep dir>/<job number>/``: run.json, metrics.json and
the ``sweep_job.json`` each job of this invocation writes), so it works the same whatever
launcher ran the jobs, in whatever process. The planned job list, where the sweeper is
Hydra's BasicSweeper, adds the jobs that never started.

sweep.json is written twice: at the start (``status: running``, the plan and an
``invocation`` id that each job copies into its sweep_job.json) and at the end.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

from dq.report import degenerate
from dq.rundir.layout import HYDRA_DIR, SWEEP_JSON
from dq.rundir.read import metrics_or_empty, read_json, run_json_or_none
from dq.rundir.record import now_iso
from dq.rundir.write import write_json, write_text
from dq.sweep.jobdir import JOB_ACTION_JSON

JOBS_CSV = "jobs.csv"
NOT_STARTED = "not_started"


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    try:
        return read_json(Path(sweep_dir) / SWEEP_JSON)
    except (OSError, ValueError):
        return {}


def start_sweep(sweep_dir: Path, planned: list[list[str]] | None, invocation: str) -> None:
    """Write sweep.json as ``running``, with the planned jobs (None: the sweeper decides
    as it goes, e.g. Optuna)."""
    write_json(
        Path(sweep_dir) / SWEEP_JSON,
        {
            "status": "running",
            "invocation": invocation,
            "start": now_iso(),
            "end": None,
            "planned": len(planned) if planned is not None else None,
            "plan": planned,
        },
    )


def _job_numbers(sweep_dir: Path, planned: list[list[str]] | None) -> list[int]:
    found = {int(path.name) for path in Path(sweep_dir).iterdir() if path.is_dir() and path.name.isdigit()}
    return sorted(found | set(range(len(planned or []))))


def _this_invocation(job_dir: Path, invocation: str | None) -> dict[str, Any] | None:
    """The job's sweep_job.json when this invocation of the sweep wrote it."""
    try:
        action = read_json(job_dir / JOB_ACTION_JSON)
    except (OSError, ValueError):
        return None
    return action if invocation is not None and action.get("invocation") == invocation else None


def _recorded_overrides(job_dir: Path) -> list[str] | None:
    path = job_dir / HYDRA_DIR / "overrides.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return [str(item) for item in OmegaConf.load(path)]


def job_entry(sweep_dir: Path, number: int, planned: list[str] | None, invocation: str | None) -> dict[str, Any]:
    """One job as sweep.json lists it."""
    job_dir = Path(sweep_dir) / str(number)
    handled = _this_invocation(job_dir, invocation) if job_dir.is_dir() else None
    run = run_json_or_none(job_dir) if job_dir.is_dir() else None
    overrides = planned
    if overrides is None:
        overrides = (handled or {}).get("overrides") or (run or {}).get("overrides") or _recorded_overrides(job_dir)
    if handled is not None:
        status, action, error = handled["status"], handled["action"], handled.get("error")
    elif run is not None:
        status, action, error = run.get("status", "failed"), None, run.get("error")
    else:
        status, action, error = NOT_STARTED, None, None
    metrics = metrics_or_empty(job_dir) if status in ("completed", "skipped") else {}
    return {
        "job": number,
        "overrides": list(overrides or []),
        "status": status,
        "action": action,
        "run_dir": str(job_dir),
        "error": error,
        "metrics": metrics,
    }


def collect(sweep_dir: Path) -> dict[str, Any]:
    """sweep.json's content now: every planned or present job, and the counts."""
    sweep_dir = Path(sweep_dir)
    head = read_sweep(sweep_dir)
    plan: list[list[str]] | None = head.get("plan")
    invocation = head.get("invocation")
    jobs = [
        job_entry(sweep_dir, number, plan[number] if plan and number < len(plan) else None, invocation)
        for number in _job_numbers(sweep_dir, plan)
    ]
    actions = Counter(job["action"] for job in jobs if job["action"])
    return {
        **head,
        "counts": dict(Counter(job["status"] for job in jobs), total=len(jobs)),
        "actions": dict(actions),
        "jobs": jobs,
    }


def _override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def jobs_csv(jobs: list[dict[str, Any]]) -> str:
    """One row per job: job, status, degenerate (its marks, empty for a sound run), each
    override key, then each metric."""
    keys: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for job in jobs:
        keys.update(dict.fromkeys(_override_key(item) for item in job["overrides"]))
        metrics.update(dict.fromkeys(job["metrics"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["job", "status", "degenerate", *keys, *metrics])
    for job in jobs:
        values = {_override_key(item): item.partition("=")[2] for item in job["overrides"]}
        writer.writerow(
            [
                job["job"],
                job["status"],
                degenerate.mark(job["metrics"]),  # constant predictor, diverged: dq.report.degenerate
                *(values.get(key, "") for key in keys),
                *(job["metrics"].get(m, "") for m in metrics),
            ]
        )
    return buffer.getvalue()


def finish_sweep(sweep_dir: Path) -> dict[str, Any]:
    """Write the final sweep.json and jobs.csv at the sweep root; return sweep.json."""
    sweep = collect(sweep_dir)
    sweep.update(status="finished", end=now_iso())
    write_json(Path(sweep_dir) / SWEEP_JSON, sweep)
    write_text(Path(sweep_dir) / JOBS_CSV, jobs_csv(sweep["jobs"]))
    return sweep


def fail_sweep(sweep_dir: Path, error: str) -> dict[str, Any]:
    """sweep.json (``failed``, with ``error``) and jobs.csv of a sweep that its launcher or
    sweeper gave up on (no ``sbatch``, a submission refused): never left ``running``."""
    sweep = collect(sweep_dir)
    sweep.update(status="failed", end=now_iso(), error=error)
    write_json(Path(sweep_dir) / SWEEP_JSON, sweep)
    write_text(Path(sweep_dir) / JOBS_CSV, jobs_csv(sweep["jobs"]))
    return sweep


def progress_line(sweep_dir: Path) -> str:
    """``sweep: 5/12 done, 1 failed, 6 remaining`` over the jobs this invocation handled."""
    sweep_dir = Path(sweep_dir)
    head = read_sweep(sweep_dir)
    invocation, planned = head.get("invocation"), head.get("planned")
    statuses = Counter()
    for path in sweep_dir.iterdir():
        handled = _this_invocation(path, invocation) if path.is_dir() else None
        if handled is not None:
            statuses[handled["status"]] += 1
    done = statuses["completed"] + statuses["skipped"]
    parts = [f"{done}/{planned} done" if planned else f"{done} done", f"{statuses['failed']} failed"]
    if statuses["interrupted"]:
        parts.append(f"{statuses['interrupted']} interrupted")
    if planned:
        parts.append(f"{max(planned - sum(statuses.values()), 0)} remaining")
    return "sweep: " + ", ".join(parts)
