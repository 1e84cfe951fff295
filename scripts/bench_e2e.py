"""End to end, shell to shell: dq-train against the peer scripts, as whole processes.

The task (issue 10): 3 epochs of the mnist5k CNN, batch 128, no batch norm, no dropout, no
explanations. Each row is one command run as a fresh process; rounds alternate the commands
(dq, plain, Lightning, ... then again), so drifting machine load hits each alike, and the
table gives medians. One untimed warm-up round first fills the OS file cache, Python's
bytecode caches and dq's parsed-dataset cache (a private ``DQ_CACHE_DIR`` in a temporary
folder), so every timed run is a second run, as in a sweep or a day of work.

- wall: from fork to exit, as a shell's ``time`` sees it;
- peak RSS: the child's own ``ru_maxrss`` (``os.wait4``'s resource usage of that process);
- test accuracy: what the command printed, to check the peers trained the same thing;
- the lean script: the plain one without its per-epoch validation (issue 25's peer: dq ≤ 1.1×);
- the per-epoch row: scripts/bench_loop.py (dq's engine against a plain loop, in one process).

    python scripts/bench_e2e.py                 # what `make bench` runs (3 timed rounds)
    python scripts/bench_e2e.py --rounds 5 --no-epoch
    python scripts/bench_e2e.py --levers        # also dq-train with trainer.channels_last / trainer.compile

Lightning rows need the optional bench extra (``pip install -e ".[bench]"``); without it they
are left out and the table says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The task, as dq-train options; the peers' defaults are the same task.
TASK = [
    "trainer.epochs=3",
    "trainer.batch_size=128",
    "model.batch_norm=false",
    "model.dropout=0",
    "explain.enabled=false",
]
ACCURACY = re.compile(r"test(?:/| )accuracy\D*?([01]\.\d+)")


@dataclass
class Row:
    """One command of the table and what its timed runs measured."""

    name: str
    argv: list[str]
    wall: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    accuracy: str = ""

    def run(self, env: dict[str, str], timed: bool) -> None:
        start = time.perf_counter()
        with tempfile.TemporaryFile() as out:
            child = subprocess.Popen(self.argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=env["BENCH_CWD"])
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - start
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read().decode(errors="replace")
        if child.returncode != 0:
            sys.exit(f"bench: {' '.join(self.argv)} exited with {child.returncode}:\n{text[-2000:]}")
        if timed:
            self.wall.append(seconds)
            self.rss_mb.append(usage.ru_maxrss / 1024)  # kilobytes on Linux
        found = ACCURACY.findall(text)
        self.accuracy = found[-1] if found else self.accuracy

    def median(self) -> float:
        return statistics.median(self.wall)


def fresh_run_dir(folder: Path) -> str:
    """A new run directory under ``folder`` for each run of a row: dq-train refuses to run
    again into a directory that holds a completed run."""
    return f"hydra.run.dir={folder}/${{now:%H-%M-%S-%f}}"


def rows(scratch: Path, with_lightning: bool, levers: bool) -> list[Row]:
    python = sys.executable
    peers = ROOT / "scripts" / "peers"
    table = [
        Row("dq-train (the task)", [str(BIN / "dq-train"), *TASK, fresh_run_dir(scratch / "dq-run")]),
        Row("plain PyTorch script", [python, str(peers / "plain_torch.py"), "--save", str(scratch / "plain.pt")]),
        Row(
            "lean script (no per-epoch validation)",
            [python, str(peers / "plain_torch.py"), "--no-val", "--save", str(scratch / "lean.pt")],
        ),
    ]
    if with_lightning:
        table.append(
            Row("Lightning + DataLoader", [python, str(peers / "lightning_peer.py"), "--root", str(scratch / "lit")])
        )
    if levers:  # the fast path (trainer.compile, trainer.channels_last), compile time included
        for lever in ("trainer.channels_last=true", "trainer.compile=true"):
            run_dir = fresh_run_dir(scratch / lever.split(".")[1].split("=")[0])
            table.append(Row(f"dq-train {lever}", [str(BIN / "dq-train"), *TASK, lever, run_dir]))
    table += [
        Row('python -c "import torch"', [python, "-c", "import torch"]),
        Row('python -c "import dq"', [python, "-c", "import dq"]),
        Row("dq-train --cfg job", [str(BIN / "dq-train"), *TASK, "--cfg", "job"]),
    ]
    return table


def epoch_ratio(env: dict[str, str], scratch: Path) -> str:
    """dq's engine / a plain loop per epoch, from scripts/bench_loop.py (median epochs)."""
    out = scratch / "loop.json"
    argv = [sys.executable, str(ROOT / "scripts" / "bench_loop.py"), *TASK[1:4], "--json", str(out)]
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=env["BENCH_CWD"])
    loop = json.loads(out.read_text())
    return f"{loop['dq_s']:.3f} s vs {loop['plain_s']:.3f} s per epoch: **{loop['ratio']:.2f}×**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (medians of these), after one warm-up")
    parser.add_argument("--levers", action="store_true", help="add dq-train rows with trainer.channels_last / compile")
    parser.add_argument("--no-epoch", action="store_true", help="leave out the per-epoch row (scripts/bench_loop.py)")
    args = parser.parse_args()
    with_lightning = importlib.util.find_spec("lightning") is not None

    with tempfile.TemporaryDirectory(prefix="dq-bench-") as tmp:
        scratch = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
            "DQ_CACHE_DIR": str(scratch / "cache"),
            "BENCH_CWD": str(scratch),
        }
        table = rows(scratch, with_lightning, args.levers)
        for round_index in range(args.rounds + 1):  # round 0 warms up, untimed
            for row in table:
                row.run(env, timed=round_index > 0)
        epoch = "" if args.no_epoch else epoch_ratio(env, scratch)

    dq, plain, lean = table[0], table[1], table[2]
    lightning = table[3] if with_lightning else None
    print(
        f"medians of {args.rounds} alternating runs after one warm-up; {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}"
    )
    print()
    print("| what | wall time (median) | peak RSS | test accuracy | ratio |")
    print("|---|---|---|---|---|")
    for row in table:
        if row is dq:
            ratio = "1.00× (reference)"
        elif row is plain:
            ratio = f"dq / plain = **{dq.median() / row.median():.2f}×** (target ≤ 1.0)"
        elif row is lean:
            ratio = f"dq / lean = **{dq.median() / row.median():.2f}×** (target ≤ 1.1)"
        elif row is lightning:
            ratio = f"Lightning / dq = **{row.median() / dq.median():.2f}×** (target ≥ 1.2)"
        else:
            ratio = f"{row.median() / dq.median():.2f} of dq's"
        runs = ", ".join(f"{t:.1f}" for t in row.wall)
        rss = f"{statistics.median(row.rss_mb):.0f} MB"
        print(f"| {row.name} | {row.median():.2f} s ({runs}) | {rss} | {row.accuracy or '-'} | {ratio} |")
    if not with_lightning:
        print('| Lightning + DataLoader | not installed: pip install -e ".[bench]" | | | |')
    if epoch:
        print(f"| per epoch: dq engine vs plain loop (scripts/bench_loop.py) | {epoch} | | | target ≤ 1.05 |")
    print()
    print("dq-train command: dq-train " + " ".join(TASK))


if __name__ == "__main__":
    main()
