"""dq-table's rows side by side (--jobs, dq.paper.slots): how many at once, the launcher
combinations it refuses, children kept to the slots, and a stop signal that leaves no
dq-train behind and a re-run that finishes the table."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dq.errors import DQUserError
from dq.paper.command import main, rows_at_once
from dq.paper.slots import Slots

CORES = os.cpu_count() or 1


def test_rows_at_once_is_one_per_core_unless_a_launcher_or_in_process_is_named() -> None:
    assert rows_at_once(None, ["trainer.device=cpu"], in_process=False) == CORES
    assert rows_at_once(None, ["launcher=joblib"], in_process=False) == 1  # the launcher spreads the seeds
    assert rows_at_once(None, ["launcher=slurm"], in_process=False) == 1
    assert rows_at_once(None, [], in_process=True) == 1
    assert rows_at_once(3, ["launcher=slurm"], in_process=False) == 3  # three rows' arrays queued at once
    assert rows_at_once(3, ["launcher=local"], in_process=False) == 3
    assert rows_at_once(1, ["launcher=joblib"], in_process=False) == 1


@pytest.mark.parametrize(
    ("jobs", "extra", "in_process", "message"),
    [
        (2, ["launcher=joblib"], False, r"^--jobs 2 runs 2 rows at once, .*launcher=joblib runs a row's seeds at once"),
        (
            2,
            ["launcher=submitit_local"],
            False,
            r"give --jobs 1 with launcher=submitit_local, or leave the launcher out$",
        ),
        (0, [], False, r"^--jobs must be a number of rows at once \(1, 2, \.\.\.\), got 0$"),
        (2, [], True, r"^--jobs 2 runs rows in dq-train processes side by side; --in-process"),
    ],
)
def test_rows_at_once_refuses_what_would_share_the_cores_or_cannot_hold(
    jobs: int, extra: list[str], in_process: bool, message: str
) -> None:
    with pytest.raises(DQUserError, match=message):
        rows_at_once(jobs, extra, in_process)


def test_the_refusal_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as caught:
        main(["rrr_decoy", "--quick", "--jobs", "2", "--runs", str(runs), "launcher=joblib"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dq-table: error: --jobs 2 runs 2 rows at once") and "\n" not in err
    assert not runs.exists()


def _stamp_child(path: Path) -> list[str]:
    """A child that records when it ran: ``start end`` (monotonic seconds) in ``path``."""
    code = (
        "import sys, time; start = time.monotonic(); time.sleep(0.6); "
        "open(sys.argv[1], 'w').write(f'{start} {time.monotonic()}')"
    )
    return [sys.executable, "-c", code, str(path)]


@pytest.mark.parametrize("at_once", [1, 2])
def test_slots_run_at_most_at_once_children_and_report_each_status(at_once: int, tmp_path: Path) -> None:
    slots, statuses = Slots(at_once), []
    for number in range(4):
        slots.start(_stamp_child(tmp_path / f"{number}.txt"), tmp_path / f"{number}.log", statuses.append)
    slots.wait_all()
    assert statuses == [0, 0, 0, 0]
    spans = [tuple(map(float, (tmp_path / f"{n}.txt").read_text().split())) for n in range(4)]
    most = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert most == at_once  # two at once with two slots (four children of 0.6 s), never with one
    assert (tmp_path / "0.log").read_text().startswith(f"$ {sys.executable} -c ")


INTERRUPTED = """
name: stop
title: "Stopped and run again"
metrics: [test/accuracy]
tolerance: {abs: 0.9}
seeds: [0, 1]
overrides: [dataset=digits, model=mlp, explain.enabled=false, trainer.progress=false, eval.bootstrap=0]
rows:
  - label: fast
    overrides: [trainer.epochs=1, dataset.limit=200]
    source: {test/accuracy: {mean: 0.5}}
  - label: slow
    overrides: [trainer.epochs=150]
"""


def _dq_train_children(runs: Path) -> list[int]:
    """Live (not zombie) processes whose command line names the runs directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if str(runs) in command and "dq-table" not in command and "Z" not in state.split()[1]:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigterm_stops_every_row_it_started_and_a_rerun_reuses_finished_runs(tmp_path: Path) -> None:
    (tmp_path / "stop.yaml").write_text(textwrap.dedent(INTERRUPTED), encoding="utf-8")
    runs = tmp_path / "runs"
    command = [sys.executable, "-c", "from dq.cli import table_main; table_main()", "stop", "--tables", str(tmp_path)]
    command += ["--out", str(tmp_path / "tables"), "--runs", str(runs), "--jobs", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), *sys.path])}
    table = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
    )
    lines = []
    assert table.stdout is not None
    for line in table.stdout:  # both rows start at once; stop once the fast one is done
        lines.append(line)
        if "row 'fast': 2/2 seeds completed" in line:
            break
    running = _dq_train_children(runs)
    assert running, "".join(lines)  # the slow row still trains
    table.send_signal(signal.SIGTERM)
    out, _ = table.communicate(timeout=120)
    assert table.returncode == 75, "".join(lines) + out
    assert "interrupted (stopped by SIGTERM): every dq-train it started has stopped" in out
    time.sleep(0.5)
    assert _dq_train_children(runs) == []  # nothing left training
    # The same command again: the fast row reused, the slow row's seeds trained to the end.
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[1/2] row 'fast': 2/2 seeds already completed" in again.stdout
    rows = {row["row"]: row for row in csv.DictReader(io.StringIO((tmp_path / "tables" / "stop.csv").read_text()))}
    assert rows["fast"]["completed"] == rows["slow"]["completed"] == "2"
