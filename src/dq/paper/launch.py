"""Running a table's work: prepare stages, run rows through ``dq-train -m``, baselines.

Each run row (and each prepare stage) is one ``dq-train -m`` sweep over the seeds into its
own directory, so whatever launcher the command line picks (``launcher=joblib``,
``launcher=slurm``) spreads the seeds, and a re-run into the same directory skips the jobs
that completed (dq's sweeps do that). A row whose jobs all completed before is not
launched at all. Up to ``--jobs`` rows run at once (dq.paper.slots), each in its own
dq-train, in the table's order; the prepare stages all end before the first row starts.
Baselines run in this process, one seed at a time, taking a slot while they run; each
seed's result is written as a small run directory (run.json, metrics.json,
.hydra/config.yaml), so the table, dq-report and a re-run read it like any run.

A job whose files are broken (truncated, empty, foreign: dq.rundir.read says which; or its
run.json lost beside its results) is never trained over: the table lists it with its
file's line, and removing its directory runs it again. A job holding only Hydra's .hydra/
never started: it runs.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from dq.errors import first_line
from dq.paper.plan import BASELINE, RUN, Plan, PlannedRow
from dq.paper.slots import Done, Slots
from dq.report.collect import BROKEN, RunResult, holds_run, is_placement, override_key, read_run
from dq.rundir.layout import HYDRA_DIR, METRICS_JSON, RUN_JSON
from dq.rundir.record import now_iso
from dq.rundir.write import write_json, write_text

Say = Callable[[str], None]
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")


def train_command() -> list[str]:
    """How to start dq-train: the console script beside this Python, else ``python -m dq.cli``.

    The child inherits the environment, PYTHONPATH included, so it imports the same dq."""
    script = Path(sys.executable).with_name("dq-train")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dq.cli"]


def hydra_path(path: Path) -> str:
    """A path as a Hydra override value (quoted where it holds other characters)."""
    text = str(path.resolve())
    return text if _PLAIN_PATH.match(text) else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def completed_jobs(sweep_dir: Path, seeds: list[int]) -> list[RunResult]:
    """The runs of ``sweep_dir`` (job ``i`` is seed ``seeds[i]``) that completed with that seed."""
    done = []
    for number, seed in enumerate(seeds):
        job = Path(sweep_dir) / str(number)
        if _done(job, seed):
            done.append(read_run(job))
    return done


def sweep(overrides: list[str], seeds: list[int], sweep_dir: Path, log_path: Path, slots: Slots, done: Done) -> None:
    """Start ``dq-train -m <overrides> seed=<seeds> hydra.sweep.dir=<sweep_dir>`` in one of
    ``slots`` (waiting for a free one), its output to ``log_path``; ``done(exit status)``
    runs when it ends."""
    args = [
        *train_command(),
        "-m",
        *overrides,
        "seed=" + ",".join(str(seed) for seed in seeds),
        f"hydra.sweep.dir={hydra_path(sweep_dir)}",
    ]
    slots.start(args, log_path, done)


def _last_error(log_path: Path) -> str:
    """The last line of a dq-train log that says what went wrong."""
    try:
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return (errors or lines or ["no output"])[-1][:300]


def run_in_process(overrides: list[str], seeds: list[int], sweep_dir: Path, log_path: Path) -> int:
    """The jobs of a sweep one after another in this process (``dq.train``), each into the
    directory the sweep would give it; launcher and Hydra overrides do not apply. For
    tests and debugging: no process start per row. Returns 0, or 1 when a job failed."""
    from dq.runner import train
    from dq.spec import compose

    status = 0
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        for number, seed in enumerate(seeds):
            job = Path(sweep_dir) / str(number)
            if _done(job, seed) or _broken(job):
                continue
            kept = composable([*overrides, f"seed={seed}"])
            log.write(f"in process: {job}: {' '.join(kept)}\n")
            try:
                train(compose(kept), job)
            except Exception as error:  # one job's failure is the row's, as in a sweep
                log.write(f"error: {first_line(f'{type(error).__name__}: {error}')}\n")
                status = 1
    return status


def broken_jobs(sweep_dir: Path, seeds: list[int]) -> list[RunResult]:
    """The jobs of ``sweep_dir`` that hold a run with a broken file (dq.rundir.read) or
    without its run.json: left as they are and listed, never trained over."""
    jobs = [Path(sweep_dir) / str(number) for number in range(len(seeds))]
    return [run for run in (read_run(job) for job in jobs if holds_run(job)) if run.status == BROKEN]


def run_sweep_step(what: str, overrides: list[str], plan: Plan, sweep_dir: Path, slug: str, say: Say, slots: Slots,
                   outcome: dict[str, bool]) -> None:  # fmt: skip
    """Run (or reuse) one sweep over the plan's seeds; ``outcome[slug]`` is set to whether
    every seed completed once it is known (at once, or when its dq-train ends)."""
    seeds = plan.seeds
    slots.check_stop()
    if len(completed_jobs(sweep_dir, seeds)) == len(seeds):
        say(f"{what}: {len(seeds)}/{len(seeds)} seeds already completed in {sweep_dir}, reused")
        outcome[slug] = True
        return
    broken = broken_jobs(sweep_dir, seeds)
    if broken and len(completed_jobs(sweep_dir, seeds)) + len(broken) == len(seeds):
        say(f"{what}: {len(broken)} job(s) in {sweep_dir} have broken files, listed at the end; not run again")
        outcome[slug] = False
        return
    log_path = plan.log_path(slug)

    def finished(status: int) -> None:
        done = len(completed_jobs(sweep_dir, seeds))
        outcome[slug] = done == len(seeds)
        if outcome[slug]:
            say(f"{what}: {done}/{len(seeds)} seeds completed")
        else:
            error = _last_error(log_path)
            say(f"{what}: {done}/{len(seeds)} seeds completed (dq-train exit {status}): {error}; log: {log_path}")

    if plan.in_process:
        say(f"{what}: running {len(seeds)} seed(s) in this process into {sweep_dir}")
        finished(run_in_process(overrides, seeds, sweep_dir, log_path))
        return
    slots.wait_for_room()  # the line below says when it starts, not when it was queued
    say(f"{what}: running {len(seeds)} seed(s) into {sweep_dir}")
    sweep(overrides, seeds, sweep_dir, log_path, slots, finished)


def run_prepare(plan: Plan, say: Say, slots: Slots) -> bool:
    """Every prepare stage, side by side as slots allow, all ended before any row; True
    when all their seeds completed."""
    outcome: dict[str, bool] = {}
    for stage, prepare in plan.spec.prepare.items():
        overrides = [*plan.common, *prepare.overrides, *plan.appended]
        sweep_dir = plan.prepare_dir(stage)
        run_sweep_step(f"prepare {stage!r}", overrides, plan, sweep_dir, sweep_dir.name, say, slots, outcome)
    slots.wait_all()
    for stage in plan.spec.prepare:
        link_seeds(plan.prepare_dir(stage), plan.seeds)
    return all(outcome.values())


def link_seeds(sweep_dir: Path, seeds: list[int]) -> None:
    """``<sweep_dir>/seed-<s>`` → the job of seed ``s`` (what ``{prepare:<stage>}`` names)."""
    for number, seed in enumerate(seeds):
        link = Path(sweep_dir) / f"seed-{seed}"
        if link.is_symlink():
            link.unlink()
        if (Path(sweep_dir) / str(number)).is_dir() and not link.exists():
            link.symlink_to(str(number), target_is_directory=True)


def _done(job: Path, seed: int) -> bool:
    if not (job / RUN_JSON).is_file():
        return False
    run = read_run(job)
    return run.ok and run.seed == seed


def _broken(job: Path) -> bool:
    """A job whose files are broken (or whose run.json is lost): the table lists it and
    leaves it alone."""
    return holds_run(job) and read_run(job).status == BROKEN


def _baseline_function(name: str) -> Callable[..., dict[str, float]]:
    module, _, function = name.rpartition(".")
    return getattr(importlib.import_module(module), function)


def composable(overrides: list[str]) -> list[str]:
    """The overrides ``dq.compose`` takes for a job run in this process: no Hydra or launcher
    keys (they place runs), the seed kept."""
    return [item for item in overrides if not (is_placement(override_key(item)) and override_key(item) != "seed")]


def compose_overrides(plan: Plan, row: PlannedRow, seed: int) -> list[str]:
    """A baseline row's overrides as ``dq.compose`` takes them (it runs here)."""
    return composable([*plan.run_overrides(row), f"seed={seed}"])


def run_baseline(plan: Plan, row: PlannedRow, say: Say, what: str = "") -> bool:
    """Each seed of a baseline row, in this process; True when every seed gave numbers."""
    from omegaconf import OmegaConf

    from dq.spec import compose

    what = what or f"row {row.label!r}"
    row_dir = plan.row_dir(row)
    reused = len(completed_jobs(row_dir, plan.seeds))
    if reused == len(plan.seeds):
        say(f"{what}: {reused}/{reused} seeds already completed in {row_dir}, reused")
        return True
    say(f"{what}: baseline {row.row.baseline} on {len(plan.seeds)} seed(s) into {row_dir}")
    function = _baseline_function(str(row.row.baseline))
    ok = True
    for number, seed in enumerate(plan.seeds):
        job = row_dir / str(number)
        if _done(job, seed) or _broken(job):
            continue
        overrides = compose_overrides(plan, row, seed)
        record = {"status": "running", "seed": seed, "overrides": overrides, "baseline": row.row.baseline}
        record["start"] = now_iso()
        try:
            cfg = compose(overrides)
            write_text(job / HYDRA_DIR / "config.yaml", OmegaConf.to_yaml(cfg))
            metrics = function(cfg, seed, **dict(row.row.baseline_args))
        except Exception as error:  # a baseline's failure is the row's, not the table's
            record.update(status="failed", error=first_line(f"{type(error).__name__}: {error}"), end=now_iso())
            write_json(job / RUN_JSON, record)
            say(f"{what}: seed {seed} failed: {record['error']}")
            ok = False
            continue
        write_json(job / METRICS_JSON, metrics)
        record.update(status="completed", end=now_iso())
        write_json(job / RUN_JSON, record)
    say(f"{what}: {len(completed_jobs(row_dir, plan.seeds))}/{len(plan.seeds)} seeds completed")
    return ok


def run_rows(plan: Plan, say: Say, slots: Slots) -> dict[str, bool]:
    """Run every row that runs (reference rows do not), as many at once as ``slots`` holds,
    in the table's order; ``{slug: every seed completed}`` once all have ended. A baseline
    row runs in this process and takes a slot while it does."""
    outcome: dict[str, bool] = {}
    todo = [row for row in plan.rows if row.kind in (RUN, BASELINE)]
    for number, row in enumerate(todo, start=1):
        what = f"[{number}/{len(todo)}] row {row.label!r}"
        if row.kind == BASELINE:
            slots.wait_for_room()
            outcome[row.slug] = run_baseline(plan, row, say, what)
        else:
            run_sweep_step(what, plan.run_overrides(row), plan, plan.row_dir(row), row.slug, say, slots, outcome)
    slots.wait_all()
    return outcome


def row_runs(plan: Plan, row: PlannedRow) -> list[RunResult]:
    """Every job of the row's directory for the plan's seeds, as read back (failed ones too)."""
    runs = []
    for number in range(len(plan.seeds)):
        job = plan.row_dir(row) / str(number)
        if holds_run(job):
            runs.append(read_run(job))
    return runs
