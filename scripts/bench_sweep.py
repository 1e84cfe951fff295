"""What a sweep costs, as whole processes: the same jobs run in parallel by
``launcher=joblib``, one after another in one ``dq-train -m`` process (``launcher=local``),
and one after another as separate ``dq-train`` processes (what a shell loop does).

Each way runs ``--repeat`` times, alternating, and the table gives the median wall time
and its ratio to the separate processes. Per job, it also gives the start-up overhead:
a job's wall time less its training time (``time/train_s`` in its metrics.json), which
covers interpreter start, imports, composing the config, building the data and the model,
the test evaluation and writing the run directory. ``dq-train --cfg job`` (compose and
print the config, train nothing) is the floor every process pays.

    python scripts/bench_sweep.py --ways                       # 4 adult MLP jobs, seeds 0-3
    python scripts/bench_sweep.py --ways --jobs 8 --epochs 3 --repeat 3

Without ``--ways`` (what ``make bench`` runs) it gives the two sweep rows of issue 25, each
sweep a whole ``dq-train -m`` process with ``launcher=joblib``, alternating, medians:

- per-job overhead: ``dq-train -m dataset=adult model=mlp trainer.epochs=1
  dataset.limit=2000 explain.enabled=false 'seed=range(0,8)' launcher=joblib``; a job's
  overhead is the sweep's worker time (wall × workers) less the jobs' own training and
  evaluation (``time/train_s`` + ``time/eval_s``), shared out over the jobs (target ≤ 1 s);
- a 64-trial Optuna search on Adult (``+experiment=fair_adult hparams_search=fair_pareto``, 1-epoch jobs on 500
  examples): its wall time, per trial, and the same overhead per trial.

    python scripts/bench_sweep.py                       # both rows, medians of 3
    python scripts/bench_sweep.py --repeat 1 --trials 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DQ_TRAIN = [sys.executable, "-m", "dq.cli"]


def job_overrides(epochs: int, limit: int) -> list[str]:
    return [
        "dataset=adult",
        "model=mlp",
        f"dataset.limit={limit}",
        f"trainer.epochs={epochs}",
        "trainer.early_stopping.enabled=false",
        "trainer.progress=false",
        "trainer.device=cpu",
        "explain.enabled=false",
    ]


def run(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return seconds


def train_seconds(run_dirs: list[Path]) -> list[float]:
    return [json.loads((d / "metrics.json").read_text())["time/train_s"] for d in run_dirs]


def sweep(base: list[str], seeds: list[int], launcher: str, where: Path) -> tuple[float, list[float]]:
    seconds = run(
        [
            *DQ_TRAIN,
            "-m",
            *base,
            f"seed={','.join(map(str, seeds))}",
            f"launcher={launcher}",
            f"hydra.sweep.dir={where}",
        ]
    )
    return seconds, train_seconds([where / str(i) for i in range(len(seeds))])


def one_by_one(base: list[str], seeds: list[int], where: Path) -> tuple[float, list[float], list[float]]:
    walls = [run([*DQ_TRAIN, *base, f"seed={seed}", f"hydra.run.dir={where / str(seed)}"]) for seed in seeds]
    return sum(walls), walls, train_seconds([where / str(seed) for seed in seeds])


def own_seconds(run_dirs: list[Path]) -> float:
    """The jobs' own training and test evaluation (time/train_s + time/eval_s), summed."""
    total = 0.0
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        total += metrics["time/train_s"] + metrics["time/eval_s"]
    return total


def job_dirs(sweep_dir: Path) -> list[Path]:
    return [path.parent for path in sorted(sweep_dir.glob("*/metrics.json"))]


def overhead_per_job(wall: float, run_dirs: list[Path]) -> float:
    """Worker time (wall × workers: one per core, or fewer jobs) less the jobs' own
    training and evaluation, per job: what dq, Hydra and the launcher cost around them."""
    workers = min(os.cpu_count() or 1, len(run_dirs))
    return (wall * workers - own_seconds(run_dirs)) / len(run_dirs)


def seed_sweep(where: Path, jobs: int) -> tuple[float, float]:
    """The per-job overhead row's sweep: its wall time and its overhead per job."""
    base = ["dataset=adult", "model=mlp", "trainer.epochs=1", "dataset.limit=2000", "explain.enabled=false"]
    wall = run([*DQ_TRAIN, "-m", *base, f"seed=range(0,{jobs})", "launcher=joblib", f"hydra.sweep.dir={where}"])
    return wall, overhead_per_job(wall, job_dirs(where))


def optuna_search(where: Path, trials: int) -> tuple[float, float]:
    """The Optuna row's search: its wall time and its overhead per trial."""
    command = [
        *DQ_TRAIN,
        "-m",
        "+experiment=fair_adult",
        "hparams_search=fair_pareto",
        f"hydra.sweeper.n_trials={trials}",
        "trainer.epochs=1",
        "dataset.limit=500",
        "explain.enabled=false",
        "trainer.progress=false",
        "launcher=joblib",
        f"hydra.sweep.dir={where}",
    ]
    wall = run(command)
    done = job_dirs(where)
    if len(done) != trials:
        raise SystemExit(f"the search completed {len(done)} of {trials} trials: {' '.join(command)}")
    return wall, overhead_per_job(wall, done)


def sweep_rows(args: argparse.Namespace) -> None:
    """``make bench``'s sweep rows: the seed sweep and the Optuna search, alternating."""
    rows: dict[str, list[tuple[float, float]]] = {"seeds": [], "optuna": []}
    root = Path(tempfile.mkdtemp(prefix="dq-bench-sweep-"))
    try:
        for repeat in range(args.repeat):
            rows["seeds"].append(seed_sweep(root / f"seeds{repeat}", args.jobs))
            rows["optuna"].append(optuna_search(root / f"optuna{repeat}", args.trials))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"medians of {args.repeat} alternating runs; {os.cpu_count()} cores; load average now {' '.join(load)}")
    print()
    print("| sweep (launcher=joblib) | wall time (median) | per job | overhead per job | target |")
    print("|---|---|---|---|---|")
    for name, count, key in (
        (f"{args.jobs} seeds, 1-epoch Adult MLP", args.jobs, "seeds"),
        (f"Optuna fair_pareto, {args.trials} trials", args.trials, "optuna"),
    ):
        walls = [wall for wall, _ in rows[key]]
        wall, each = statistics.median(walls), statistics.median(over for _, over in rows[key])
        runs = ", ".join(f"{w:.1f}" for w in walls)
        target = "≤ 1 s" if key == "seeds" else "-"
        print(f"| {name} | {wall:.1f} s ({runs}) | {wall / count:.2f} s | **{each:.2f} s** | {target} |")
    print()
    print("overhead per job: (wall × workers − Σ time/train_s − Σ time/eval_s) / jobs; workers = cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ways", action="store_true", help="separate processes vs launcher=local vs joblib")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per sweep (default: 4 with --ways, else 8)")
    parser.add_argument("--epochs", type=int, default=5, help="with --ways")
    parser.add_argument("--limit", type=int, default=4000, help="examples per split (dataset.limit), with --ways")
    parser.add_argument("--trials", type=int, default=64, help="the Optuna search's trials")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.ways:
        args.jobs = args.jobs or 8
        sweep_rows(args)
        return
    args.jobs = args.jobs or 4
    base, seeds = job_overrides(args.epochs, args.limit), list(range(args.jobs))
    walls: dict[str, list[float]] = {"separate processes": [], "launcher=local": [], "launcher=joblib": []}
    overhead: dict[str, list[float]] = {key: [] for key in walls}
    floor: list[float] = []
    root = Path(tempfile.mkdtemp(prefix="dq-bench-sweep-"))
    try:
        for repeat in range(args.repeat):
            where = root / str(repeat)
            total, job_walls, trained = one_by_one(base, seeds, where / "separate")
            walls["separate processes"].append(total)
            overhead["separate processes"] += [w - t for w, t in zip(job_walls, trained, strict=True)]
            for launcher in ("local", "joblib"):
                total, trained = sweep(base, seeds, launcher, where / launcher)
                walls[f"launcher={launcher}"].append(total)
                if launcher == "local":  # one process: its start-up is shared by all its jobs
                    overhead["launcher=local"].append((total - sum(trained)) / args.jobs)
            floor.append(run([*DQ_TRAIN, "--cfg", "job"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    reference = statistics.median(walls["separate processes"])
    print(f"{args.jobs} jobs: adult MLP, {args.limit} examples, {args.epochs} epochs; {os.cpu_count()} cores")
    print(f"median of {args.repeat} runs, alternating\n")
    print(f"{'way':<22}{'wall s':>9}{'ratio':>8}{'overhead/job s':>16}")
    for way, values in walls.items():
        wall = statistics.median(values)
        each = f"{statistics.median(overhead[way]):.1f}" if overhead[way] else "-"
        print(f"{way:<22}{wall:>9.1f}{wall / reference:>8.2f}{each:>16}")
    print(f"\ndq-train --cfg job (start-up floor of any process): {statistics.median(floor):.1f} s")
    print("overhead/job: a job's wall time less its time/train_s (launcher=local: the sweep's, shared by its jobs)")


if __name__ == "__main__":
    main()
