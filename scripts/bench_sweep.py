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

Without ``--ways`` (what ``make bench`` runs) it gives the sweep rows of issue 25, each
sweep a whole ``dq-train -m`` process with ``launcher=joblib``, alternating, medians:

- per-job overhead: ``dq-train -m dataset=adult model=mlp trainer.epochs=1
  dataset.limit=2000 explain.enabled=false 'seed=range(0,N)' launcher=joblib`` at N = 8 and
  N = 24. A sweep's worker time (wall × workers) less its jobs' own training and
  evaluation (``time/train_s`` + ``time/eval_s``) is a fixed part (starting the parent and
  its workers, composing and checking the configs, the summary and report at the end) plus
  a part per job. The 16 jobs more of the larger sweep give the part per job, what each
  further job costs beyond its own work (target ≤ 1 s: workers keep their imports, parsed
  datasets and compiled schemas between jobs); the rest is the sweep's fixed start-up and
  finish, given in seconds of wall time. The 8-job sweep's whole overhead shared out over
  its 8 jobs (the row ``make bench`` printed before) is given too;
- a 64-trial Optuna search on Adult (``+experiment=fair_adult hparams_search=fair_pareto``, 1-epoch jobs on 500
  examples): its wall time, per trial, and its whole overhead per trial.

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


def seed_sweep(where: Path, jobs: int) -> tuple[float, float]:
    """A seed sweep of ``jobs`` 1-epoch Adult jobs: its wall time and its worker time less
    the jobs' own work (wall × workers − Σ time/train_s − Σ time/eval_s)."""
    base = ["dataset=adult", "model=mlp", "trainer.epochs=1", "dataset.limit=2000", "explain.enabled=false"]
    wall = run([*DQ_TRAIN, "-m", *base, f"seed=range(0,{jobs})", "launcher=joblib", f"hydra.sweep.dir={where}"])
    return wall, overhead(wall, job_dirs(where))


def overhead(wall: float, run_dirs: list[Path]) -> float:
    """Worker time (wall × workers: one per core, or fewer jobs) less the jobs' own training
    and evaluation: what dq, Hydra and the launcher cost around them, in worker seconds."""
    return wall * min(os.cpu_count() or 1, len(run_dirs)) - own_seconds(run_dirs)


def per_job_and_fixed(small: tuple[int, float], large: tuple[int, float]) -> tuple[float, float]:
    """From two sweeps' ``(jobs, overhead)``: the overhead each further job adds (the larger
    sweep's extra overhead over its extra jobs) and the fixed part in wall seconds (the
    smaller sweep's overhead less its jobs' part, over the workers)."""
    (n_small, over_small), (n_large, over_large) = small, large
    per_job = (over_large - over_small) / (n_large - n_small)
    workers = min(os.cpu_count() or 1, n_small)
    return per_job, (over_small - per_job * n_small) / workers


def optuna_search(where: Path, trials: int) -> tuple[float, float]:
    """The Optuna row's search: its wall time and its overhead (as ``seed_sweep``)."""
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
    return wall, overhead(wall, done)


def sweep_rows(args: argparse.Namespace) -> None:
    """``make bench``'s sweep rows: the two seed sweeps and the Optuna search, alternating."""
    small, large = args.jobs, 3 * args.jobs
    rows: dict[str, list[tuple[float, float]]] = {"small": [], "large": [], "optuna": []}
    root = Path(tempfile.mkdtemp(prefix="dq-bench-sweep-"))
    try:
        for repeat in range(args.repeat):
            rows["small"].append(seed_sweep(root / f"seeds{small}-{repeat}", small))
            rows["large"].append(seed_sweep(root / f"seeds{large}-{repeat}", large))
            rows["optuna"].append(optuna_search(root / f"optuna{repeat}", args.trials))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"medians of {args.repeat} alternating runs; {os.cpu_count()} cores; load average now {' '.join(load)}")
    print()

    def median(key: str, part: int) -> float:
        return statistics.median(row[part] for row in rows[key])

    def runs(key: str) -> str:
        return ", ".join(f"{wall:.1f}" for wall, _ in rows[key])

    per_job, fixed = per_job_and_fixed((small, median("small", 1)), (large, median("large", 1)))
    print("| sweep (launcher=joblib, 1-epoch Adult MLP) | wall time (median) | overhead | target |")
    print("|---|---|---|---|")
    print(
        f"| {small} seeds | {median('small', 0):.1f} s ({runs('small')}) | {median('small', 1) / small:.2f} s per job, all in | - |"
    )
    print(
        f"| {large} seeds | {median('large', 0):.1f} s ({runs('large')}) | {median('large', 1) / large:.2f} s per job, all in | - |"
    )
    print(f"| each further job ({large} − {small} seeds) | | **{per_job:.2f} s per job** | ≤ 1 s |")
    print(f"| the sweep's fixed start-up and finish | | {fixed:.1f} s of wall time | - |")
    trials = args.trials
    wall = median("optuna", 0)
    print(
        f"| Optuna fair_pareto, {trials} trials | {wall:.1f} s ({runs('optuna')}) | "
        f"{median('optuna', 1) / trials:.2f} s per trial, all in ({wall / trials:.2f} s wall per trial) | - |"
    )
    print()
    print("overhead: wall × workers − Σ time/train_s − Σ time/eval_s (workers = cores, or fewer jobs); each further")
    print(f"job: the {large}-job sweep's overhead less the {small}-job one's, over the {large - small} jobs more")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ways", action="store_true", help="separate processes vs launcher=local vs joblib")
    parser.add_argument(
        "--jobs", type=int, default=None, help="jobs per sweep (default: 4 with --ways, else 8, and 3× as many)"
    )
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
