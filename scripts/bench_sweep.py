"""What a sweep costs, as whole processes: the same jobs run in parallel by
``launcher=joblib``, one after another in one ``dq-train -m`` process (``launcher=local``),
and one after another as separate ``dq-train`` processes (what a shell loop does).

Each way runs ``--repeat`` times, alternating, and the table gives the median wall time
and its ratio to the separate processes. Per job, it also gives the start-up overhead:
a job's wall time less its training time (``time/train_s`` in its metrics.json), which
covers interpreter start, imports, composing the config, building the data and the model,
the test evaluation and writing the run directory. ``dq-train --cfg job`` (compose and
print the config, train nothing) is the floor every process pays.

    python scripts/bench_sweep.py                      # 4 adult MLP jobs, seeds 0-3
    python scripts/bench_sweep.py --jobs 8 --epochs 3 --repeat 3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--limit", type=int, default=4000, help="examples per split (dataset.limit)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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
