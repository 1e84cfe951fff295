"""Leaving a console command without the interpreter's teardown (dq.process_exit): what
Python's exit would still do that anyone could see is done first (threads that are not
daemons finish, atexit functions run, the standard streams are flushed), and the exit
status is the one Python would give."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = """
import atexit, sys, threading, time
from pathlib import Path
from dq.process_exit import run_then_leave

out = Path(sys.argv[1])

def late_writer():
    time.sleep(0.3)
    (out / "thread.txt").write_text("done")

def main():
    atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
    threading.Thread(target=late_writer).start()  # not a daemon: the exit waits for it
    sys.stdout.write("buffered, no newline")  # a pipe: block-buffered until flushed
    {ending}

run_then_leave(main)
"""


def leave_with(ending: str, tmp_path: Path) -> subprocess.CompletedProcess:
    program = PROGRAM.format(ending=ending)
    return subprocess.run([sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("ending", "status", "stderr"),
    [
        ("return None", 0, ""),
        ("sys.exit(3)", 3, ""),
        ("sys.exit(None)", 0, ""),
        ("sys.exit('dq-train: error: no such dataset')", 1, "dq-train: error: no such dataset\n"),
    ],
)
def test_a_command_leaves_with_pythons_status_after_its_threads_atexit_and_output(
    tmp_path: Path, ending: str, status: int, stderr: str
) -> None:
    done = leave_with(ending, tmp_path)
    assert (done.returncode, done.stderr) == (status, stderr)
    assert done.stdout == "buffered, no newline"
    assert (tmp_path / "thread.txt").read_text() == "done"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_an_unexpected_error_leaves_as_python_does_with_its_traceback(tmp_path: Path) -> None:
    done = leave_with("raise RuntimeError('a bug')", tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "RuntimeError: a bug"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_under_a_profiler_it_leaves_the_usual_way_so_the_profile_is_written(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text("import sys\nfrom dq.process_exit import run_then_leave\nrun_then_leave(lambda: sys.exit(3))\n")
    profile = tmp_path / "out.prof"
    command = [sys.executable, "-m", "cProfile", "-o", str(profile), str(program)]
    subprocess.run(command, capture_output=True, text=True, timeout=60)  # cProfile itself swallows SystemExit
    assert profile.stat().st_size > 0  # os._exit(3) would have ended the process before cProfile wrote it


def test_the_dq_train_script_leaves_this_way() -> None:
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dq-train"] == "dq.cli:train_command"
