"""Start-up cost of dq, as whole processes: what every sweep job and every ``--help`` pays.

For each checkout given (default: this one), alternating runs, it times

- ``import dq``;
- ``dq-train --cfg job`` (compose and print the config, train nothing);
- the default run from process start to its first training batch (the process is
  stopped there, so nothing is trained or written beyond the run directory's start);

and prints the medians side by side, with the ratio of each checkout to the first one.
Comparing with an older commit: ``git worktree add /tmp/dq-old <commit>`` and
``python scripts/bench_startup.py --checkout /tmp/dq-old --checkout .``. Each checkout's
``src/`` goes first on PYTHONPATH, so one virtualenv serves them all.

    python scripts/bench_startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Stops the run at its first training batch and prints the seconds since the process
# started (read from /proc, so interpreter start-up counts too).
FIRST_BATCH_PROBE = """
import os, sys, time
def since_start():
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / ticks
    boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
    return time.time() - (boot + start)
import dq.objectives.base as base
def first_batch(self, model, batch):
    sys.stderr.write(f"FIRST_BATCH {since_start():.3f}\\n")
    sys.stderr.flush()
    os._exit(0)
base.Objective.__call__ = first_batch
sys.argv = ["dq-train", "trainer.progress=false", "trainer.device=cpu", "hydra.run.dir=" + sys.argv[1]]
from dq.cli import train_main
train_main()
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def first_batch_seconds(env: dict[str, str], run_dir: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_BATCH_PROBE, run_dir], env=env, capture_output=True, text=True, check=True
    )
    line = next(line for line in done.stderr.splitlines() if line.startswith("FIRST_BATCH "))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", type=Path, help="a dq checkout (repeatable; default: this one)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    checkouts = [path.resolve() for path in (args.checkout or [Path(__file__).resolve().parents[1]])]
    measures = ("import dq", "dq-train --cfg job", "start to first batch")
    times: dict[tuple[Path, str], list[float]] = {(c, m): [] for c in checkouts for m in measures}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeat):
            for checkout in checkouts:  # alternate, so drifting machine load hits each alike
                env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
                times[checkout, "import dq"].append(timed([sys.executable, "-c", "import dq"], env))
                cfg_job = [sys.executable, "-c", "from dq.cli import train_main; train_main()", "--cfg", "job"]
                times[checkout, "dq-train --cfg job"].append(timed(cfg_job, env))
                run_dir = str(Path(scratch) / f"{checkout.name}-{repeat}")
                times[checkout, "start to first batch"].append(first_batch_seconds(env, run_dir))
    header = f"{'measure':<22}" + "".join(f"{str(c)[-28:]:>30}" for c in checkouts)
    print(f"medians of {args.repeat} whole-process runs, seconds (ratio to the first checkout)")
    print(header)
    for measure in measures:
        first = statistics.median(times[checkouts[0], measure])
        cells = []
        for checkout in checkouts:
            value = statistics.median(times[checkout, measure])
            cells.append(f"{value:>20.2f} ({value / first:4.2f}x)")
        print(f"{measure:<22}" + "".join(f"{cell:>30}" for cell in cells))


if __name__ == "__main__":
    main()
