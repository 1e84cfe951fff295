"""Chaos test of sweeps: SIGKILL a sweep at seeded random moments, re-run it into the same
directory after each kill until it completes, and check that nothing was lost.

1. An uninterrupted reference sweep of a small grid runs into ``OUT/reference`` (its wall
   time is the "expected duration" the kill moments are drawn from).
2. The same sweep runs into ``OUT/chaos/<episode>`` as a subprocess in its own process group;
   at a moment drawn uniformly over the expected duration the whole group gets SIGKILL (so
   kills land in start-up, training, checkpoint writes, evaluation, sweep.json and report
   writes...). The sweep is then re-run into the same directory, and killed again, until an
   invocation exits 0 with every job completed. An episode that completes before all the
   kills were spent is followed by a fresh one, until ``--kills`` kills were delivered. The
   expected duration follows a shared machine's load: a fresh episode's sweep that finished
   before its kill moment sets it anew, and three kills in a row after which no job got
   further (no epoch, no job started or completed) widen it by a quarter.
3. Every job's final metrics.json is compared with the reference's, value by value
   (``time/*`` keys aside); after each kill the script records which jobs had completed
   (with their metrics) and which had a last.pt (with its epoch), and checks at the end that
   no completed result was lost or changed and that no job restarted from scratch when it
   had a last.pt to resume from.

Prints one summary table and writes ``OUT/summary.json``; exits 1 when a result was lost
or differs. Example::

    PYTHONPATH=src python scripts/chaos_sweep.py --kills 100 --seed 0 --out /tmp/chaos
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dq.rundir.layout import CHECKPOINTS, LAST_CHECKPOINT, METRICS_JSON, RUN_JSON
from dq.rundir.read import load_checkpoint, read_json
from dq.rundir.write import write_json
from dq.sweep.summary import SWEEP_JSON

# Four jobs (two seeds × two adversarial weights), three epochs each, on 8x8 digits: short
# enough for many kills, with PGD's random starts and every RNG in last.pt to get right.
GRID = (
    "dataset=digits",
    "model=mlp",
    "trainer.epochs=3",
    "seed=0,1",
    "regularizer=[adversarial]",
    "regularizer.adversarial.weight=0.25,0.75",
    "regularizer.adversarial.steps=3",
    "explain.enabled=false",
    "report.html=false",
    "report.model_card=false",
    "trainer.progress=false",
    "trainer.device=cpu",
)
IGNORED_PREFIX = "time/"  # wall-clock figures differ between any two runs


@dataclass
class Tally:
    kills: int = 0
    survived: int = 0  # kills whose episode then completed with every job identical and nothing lost
    restarts: int = 0
    episodes: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    identical: int = 0
    differing: int = 0
    missing: int = 0
    lost: int = 0  # a job completed before a kill and not completed, or changed, after
    from_scratch: int = 0  # a job with a last.pt that started again from scratch
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    # Kill moments are uniform over [0, window_s]: the expected duration of a whole sweep, first
    # the reference's wall time, then that of the latest whole sweep no kill interrupted.
    window_s: float = 0.0


def sweep_command(grid: list[str], sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "dq.cli", "-m", *grid, f"hydra.sweep.dir={sweep_dir}"]


def start(grid: list[str], sweep_dir: Path, log: Path) -> subprocess.Popen:
    """``dq-train -m`` into ``sweep_dir`` in a new session (its own process group)."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    with log.open("a") as handle:
        handle.write(f"\n=== {time.strftime('%H:%M:%S')} start\n")
        handle.flush()
        return subprocess.Popen(
            sweep_command(grid, sweep_dir), stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def sweep_complete(sweep_dir: Path) -> bool:
    try:
        sweep = read_json(sweep_dir / SWEEP_JSON)
    except (OSError, ValueError):
        return False
    counts = sweep.get("counts", {})
    done = counts.get("completed", 0) + counts.get("skipped", 0)
    return sweep.get("status") == "finished" and done == counts.get("total", -1) > 0


def job_dirs(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():  # killed before the sweep made its directory
        return []
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def snapshot(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Per job: status, first start, resumption count, last.pt's epoch, final metrics."""
    state: dict[str, dict[str, Any]] = {}
    for job in job_dirs(sweep_dir):
        run = _read(job / RUN_JSON) or {}
        last = job / CHECKPOINTS / LAST_CHECKPOINT
        epoch = None
        if last.is_file():
            try:
                epoch = int(load_checkpoint(last)["epoch"])
            except Exception:  # a torn last.pt is itself a finding
                epoch = "unreadable"
        completed = run.get("status") == "completed"
        state[job.name] = {
            "status": run.get("status"),
            "start": run.get("start"),
            "resumed": len(run.get("resumed", [])),
            "last_epoch": epoch,
            "metrics": _read(job / METRICS_JSON) if completed else None,
        }
    return state


def compare_snapshots(before: dict, after: dict, tally: Tally, when: str) -> None:
    """Completed results stay completed and unchanged; a last.pt is resumed, never dropped."""
    for name, old in before.items():
        new = after.get(name, {})
        if old["status"] == "completed":
            if new.get("status") != "completed" or new.get("metrics") != old["metrics"]:
                tally.lost += 1
                tally.problems.append(f"{when}: job {name} was completed, now {new.get('status')} (or changed)")
            continue
        if isinstance(old["last_epoch"], int):
            restarted = new.get("start") != old["start"] or new.get("resumed", 0) < old["resumed"]
            gone = not isinstance(new.get("last_epoch"), int) and new.get("status") != "completed"
            if restarted or gone or (isinstance(new.get("last_epoch"), int) and new["last_epoch"] < old["last_epoch"]):
                tally.from_scratch += 1
                tally.problems.append(
                    f"{when}: job {name} had last.pt at epoch {old['last_epoch']} and started again from scratch"
                )


def differing_keys(reference: dict[str, Any], result: dict[str, Any]) -> list[str]:
    keys = {k for k in (*reference, *result) if not k.startswith(IGNORED_PREFIX)}
    return sorted(k for k in keys if reference.get(k, "<absent>") != result.get(k, "<absent>"))


def compare_with_reference(reference_dir: Path, sweep_dir: Path, tally: Tally, episode: str) -> bool:
    same = True
    for job in job_dirs(reference_dir):
        expected = read_json(job / METRICS_JSON)
        got = _read(sweep_dir / job.name / METRICS_JSON)
        if got is None:
            tally.missing += 1
            tally.problems.append(f"episode {episode}: job {job.name} has no metrics.json")
            same = False
            continue
        keys = differing_keys(expected, got)
        if keys:
            tally.differing += 1
            tally.problems.append(f"episode {episode}: job {job.name} differs in {', '.join(keys)}")
            same = False
        else:
            tally.identical += 1
    return same


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Children that outlived the leader (none with the basic launcher) die with the group.
    for _ in range(100):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def progress(state: dict[str, dict[str, Any]]) -> tuple[int, int, int]:
    """How far a sweep got: jobs completed, epochs in last.pt files, jobs started."""
    return (
        sum(job["status"] == "completed" for job in state.values()),
        sum(job["last_epoch"] for job in state.values() if isinstance(job["last_epoch"], int)),
        sum(job["status"] is not None for job in state.values()),
    )


def run_episode(
    grid: list[str],
    sweep_dir: Path,
    log: Path,
    budget: int,
    rng: random.Random,
    tally: Tally,
    max_invocations: int,
) -> int:
    """Kill and re-run one sweep until it completes; return the kills it took."""
    kills = stalled = 0
    before = snapshot(sweep_dir)
    for invocation in range(max_invocations):
        if invocation:
            tally.restarts += 1
        began = time.monotonic()
        process = start(grid, sweep_dir, log)
        moment = rng.uniform(0.0, tally.window_s) if kills < budget else None
        try:
            code = process.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            kill_group(process)
            kills += 1
            with log.open("a") as handle:
                handle.write(f"=== SIGKILL to the group after {moment:.2f} s\n")
            after = snapshot(sweep_dir)
            compare_snapshots(before, after, tally, f"kill {tally.kills + kills}")
            stalled = stalled + 1 if progress(after) == progress(before) else 0
            if stalled >= 3:
                # Three kills in a row found nothing further: the machine is slower now than
                # when the reference ran (a shared machine); kills would all land in start-up.
                tally.window_s *= 1.25
                stalled = 0
            before = after
            continue
        if invocation == 0 and code == 0:  # a whole sweep uninterrupted: the duration today
            tally.window_s = time.monotonic() - began
        after = snapshot(sweep_dir)
        compare_snapshots(before, after, tally, f"exit {code}")
        before = after
        if code == 0 and sweep_complete(sweep_dir):
            return kills
        tally.unexpected_exits.append(f"{sweep_dir.name}: exit {code} without a kill (see {log})")
    tally.problems.append(f"{sweep_dir}: not complete after {max_invocations} invocations")
    return kills


def print_summary(tally: Tally, jobs: int) -> None:
    rows = [
        ("kills", tally.kills),
        ("kills survived", tally.survived),
        ("restarts", tally.restarts),
        ("episodes (sweeps completed under fire)", tally.episodes),
        ("jobs compared", tally.identical + tally.differing + tally.missing),
        ("jobs identical", tally.identical),
        ("jobs differing", tally.differing),
        ("jobs missing", tally.missing),
        ("completed results lost (target 0)", tally.lost),
        ("restarts from scratch despite last.pt", tally.from_scratch),
        ("exits without a kill that did not complete", len(tally.unexpected_exits)),
        ("kill window at the end", f"{tally.window_s:.0f} s"),
        ("wall time", f"{tally.wall_s:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"chaos sweep: {jobs} jobs per sweep")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for line in tally.problems + tally.unexpected_exits:
        print(f"  ! {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs to deliver in all (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, required=True, help="working directory (reference/, chaos/, logs)")
    parser.add_argument("--jobs", nargs="+", default=list(GRID), help="the sweep's overrides (default: a 4-job grid)")
    parser.add_argument("--max-invocations", type=int, default=200, help="per episode, before giving up")
    args = parser.parse_args(argv)

    began = time.monotonic()
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "sweeps.log"
    reference = out / "reference"
    if not sweep_complete(reference):
        shutil.rmtree(reference, ignore_errors=True)
        t0 = time.monotonic()
        if start(args.jobs, reference, log).wait() != 0 or not sweep_complete(reference):
            print(f"chaos sweep: the reference sweep failed; see {log}", file=sys.stderr)
            return 2
        write_json(out / "reference_time.json", {"wall_s": time.monotonic() - t0})
    expected_s = float(read_json(out / "reference_time.json")["wall_s"])
    jobs = len(job_dirs(reference))

    rng = random.Random(args.seed)
    tally = Tally(window_s=expected_s)
    chaos = out / "chaos"
    shutil.rmtree(chaos, ignore_errors=True)
    while tally.kills < args.kills:
        sweep_dir = chaos / str(tally.episodes)
        problems_before = len(tally.problems)
        kills = run_episode(args.jobs, sweep_dir, log, args.kills - tally.kills, rng, tally, args.max_invocations)
        tally.kills += kills
        tally.episodes += 1
        intact = compare_with_reference(reference, sweep_dir, tally, sweep_dir.name)
        if intact and len(tally.problems) == problems_before:
            tally.survived += kills
        tally.wall_s = time.monotonic() - began
        # Written after each episode, so a long run that is stopped still says how far it got.
        write_json(out / "summary.json", {**asdict(tally), "jobs_per_sweep": jobs, "expected_s": expected_s})
        print(
            f"episode {sweep_dir.name}: {kills} kill(s); {tally.kills}/{args.kills} kills, "
            f"{tally.identical} jobs identical, {tally.differing} differing, {tally.lost} lost",
            flush=True,
        )
    print_summary(tally, jobs)
    ok = tally.differing == tally.missing == tally.lost == tally.from_scratch == 0 and not tally.problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
