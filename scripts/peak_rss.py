"""Peak resident memory (RSS) of dq-train against the plain PyTorch peer, as whole processes.

Issue 10's target: the default run's peak RSS at most 1.2× the plain script's. Each row is
one fresh process; its peak is the kernel's ``ru_maxrss`` for that child alone
(``os.wait4``, which returns the child's own resource usage: ``getrusage(RUSAGE_CHILDREN)``
is a running maximum over every child waited for so far, so it cannot tell two apart).

Rows:

- ``dq-train (default run)``: ``make run``'s job (10 epochs, explanations, report);
- ``dq-train (bench task)``: the end-to-end task of scripts/bench_e2e.py (3 epochs, batch
  128, no batch norm, no dropout, no explanations) against
- ``plain PyTorch script``: scripts/peers/plain_torch.py, the same task written by hand
  (left out, with a note, where that file does not exist);
- what a process holds before it trains anything, to see where dq's peak comes from:
  ``import torch``, ``import dq``, and ``dq-train --cfg job`` (compose the config, train nothing).

One untimed warm-up run of each first fills dq's parsed-dataset cache (a private
``DQ_CACHE_DIR``) and the OS file cache. Runs write into a temporary folder.

    python scripts/peak_rss.py                      # the table, medians of 1 round
    python scripts/peak_rss.py --rounds 3 --json out.json --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_e2e import TASK  # the bench task's dq-train options (scripts/ is on the path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET = 1.2  # dq's peak / the plain script's (issue 10, item 5)


def peak_rss_mb(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Run ``argv`` to its end; its own peak RSS in MB (exits with its output if it fails)."""
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            out.seek(0)
            sys.exit(f"peak_rss: {' '.join(argv)} exited with {code}:\n{out.read().decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def commands(scratch: Path, peer: Path | None, quick: bool) -> dict[str, list[str]]:
    """The rows' command lines; ``quick`` leaves out the default run (about a minute)."""
    train = str(BIN / "dq-train")
    rows: dict[str, list[str]] = {}
    if not quick:
        rows["dq-train (default run)"] = [train, f"hydra.run.dir={scratch / 'default'}"]
    rows["dq-train (bench task)"] = [train, *TASK, f"hydra.run.dir={scratch / 'task'}"]
    if peer is not None:
        rows["plain PyTorch script"] = [sys.executable, str(peer), "--save", str(scratch / "plain.pt")]
    rows['python -c "import torch"'] = [sys.executable, "-c", "import torch"]
    rows['python -c "import dq"'] = [sys.executable, "-c", "import dq"]
    rows["dq-train --cfg job"] = [train, *TASK, "--cfg", "job"]
    return rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds (medians), after one warm-up")
    parser.add_argument("--peer", type=Path, default=ROOT / "scripts" / "peers" / "plain_torch.py")
    parser.add_argument("--quick", action="store_true", help="leave out the default run (10 epochs + explanations)")
    parser.add_argument("--json", type=Path, help="also write the medians (MB) here")
    args = parser.parse_args(argv)
    peer = args.peer if args.peer.is_file() else None
    with tempfile.TemporaryDirectory(prefix="dq-rss-") as tmp:
        scratch = Path(tmp)
        env = {**os.environ, "DQ_CACHE_DIR": str(scratch / "cache")}
        rows = commands(scratch, peer, args.quick)
        peaks: dict[str, list[float]] = {name: [] for name in rows}
        for round_ in range(args.rounds + 1):
            for name, command in rows.items():
                mb = peak_rss_mb(command, env, cwd=scratch)
                if round_ > 0:
                    peaks[name].append(mb)
    medians = {name: statistics.median(values) for name, values in peaks.items()}
    print(f"| what | peak RSS (MB, median of {args.rounds}) |\n|---|---|")
    for name, mb in medians.items():
        print(f"| {name} | {mb:.0f} |")
    if peer is None:
        print(f"\n(no peer script at {args.peer}: dq measured alone)")
    else:
        plain = medians["plain PyTorch script"]
        for name in ("dq-train (default run)", "dq-train (bench task)"):
            if name in medians:
                ratio = medians[name] / plain
                verdict = "meets" if ratio <= TARGET else "misses"
                print(f"\n{name} / plain: {ratio:.2f}× ({verdict} the {TARGET}× target)", end="")
        print()
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2) + "\n")
    return medians


if __name__ == "__main__":
    main()
