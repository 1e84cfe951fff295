"""Concurrency (issue 11, point 7): a run or sweep directory is one live process's at a time
(dq.rundir.lock: fcntl.flock, freed by the kernel when its holder dies), and run and
sweep directory names cannot collide (dq.rundir.layout.unique_stamp).

The lock's holder is a real child process: while it lives, a resume, a re-run sweep's job
and a second invocation of the sweep are refused with one line naming it; once it is
SIGKILLed, the same commands go on.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

import dq
from conftest import compose_config, sweep_in_process
from dq.cli import train_main
from dq.rundir import layout
from dq.rundir.layout import unique_stamp
from dq.rundir.lock import LOCK_FILE, DirectoryBusy, DirectoryLock, hold
from dq.rundir.read import read_json
from dq.rundir.write import write_json

DIGITS = ("dataset=digits", "model=mlp", "explain.enabled=false", "dataset.limit=64")
TINY_SWEEP = [
    "dataset=adult",
    "model=mlp",
    "dataset.limit=64",
    "trainer.epochs=1",
    "explain.enabled=false",
    "trainer.progress=false",
    "trainer.device=cpu",
    "report.html=false",
    "report.model_card=false",
]
HOLD = """
import sys, time
from pathlib import Path
from dq.rundir.lock import DirectoryLock
DirectoryLock(Path(sys.argv[1]), "held").acquire()
print("held", flush=True)
time.sleep(600)
"""


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(dq.__file__).parents[1])}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


@pytest.fixture
def holder() -> Iterator:
    """``holder(dir)`` starts a child process that takes ``dir``'s lock and keeps it."""
    children: list[subprocess.Popen] = []

    def start(directory: Path) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True, env=child_env()
        )
        children.append(child)
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def sigkill(child: subprocess.Popen) -> None:
    child.kill()
    child.wait(timeout=60)
    assert child.returncode == -9


def quiet() -> Console:
    return Console(file=io.StringIO())


def busy_line(what: str, directory: Path, pid: int) -> str:
    return f"{what} {directory}: it is running in pid {pid} on host {socket.gethostname()} since "


def test_a_live_holder_refuses_others_and_a_killed_one_leaves_nothing_stuck(tmp_path: Path, holder) -> None:
    child = holder(tmp_path)
    with pytest.raises(DirectoryBusy) as refused:
        DirectoryLock(tmp_path, "cannot resume").acquire()
    assert str(refused.value).startswith(busy_line("cannot resume", tmp_path, child.pid))
    assert "\n" not in str(refused.value)
    sigkill(child)
    with hold(tmp_path, "cannot resume"):  # SIGKILL gave no chance to clean up: the kernel did
        assert read_json(tmp_path / LOCK_FILE)["pid"] == os.getpid()
        with hold(tmp_path, "again"):  # re-entrant within this process
            pass
        assert read_json(tmp_path / LOCK_FILE)["pid"] == os.getpid()  # the outer hold is still on
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: no holder named


def test_resuming_a_run_that_a_live_process_holds_refuses_and_touches_nothing(
    tmp_path: Path, holder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    overrides = (*DIGITS, "trainer.epochs=2")
    dq.train(compose_config(overrides), run_dir=run_dir, console=quiet())
    run_json = run_dir / "run.json"
    write_json(run_json, {**read_json(run_json), "status": "running"})  # as a SIGKILL leaves it
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file() and path.name != LOCK_FILE}

    child = holder(run_dir)
    with pytest.raises(DirectoryBusy) as refused:
        dq.train(compose_config(overrides), run_dir=run_dir, resume=True)
    assert str(refused.value).startswith(busy_line("cannot resume", run_dir, child.pid))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["dq-train", f"resume={run_dir}"])
    with pytest.raises(SystemExit) as stop:
        train_main()
    since = read_json(run_dir / LOCK_FILE)["since"]
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"dq-train: error: {busy_line('cannot resume', run_dir, child.pid)}{since}\n"
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("*/*"))  # Hydra's dir went
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file() and path.name != LOCK_FILE}
    assert after == before

    sigkill(child)
    dq.train(compose_config(overrides), run_dir=run_dir, resume=True, console=quiet())
    info = read_json(run_json)
    assert info["status"] == "completed" and len(info["resumed"]) == 1


def test_a_rerun_sweep_refuses_the_job_a_live_process_holds_and_the_sweep_while_one_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], holder
) -> None:
    args = [*TINY_SWEEP, "seed=1", "hydra.sweep.dir=sw"]
    sweep_dir, job = tmp_path / "sw", tmp_path / "sw" / "0"
    job.mkdir(parents=True)
    # The sweep directory records this very sweep (dq.rundir.claim refuses another sweep's whole).
    OmegaConf.save({"hydra": {"overrides": {"task": args[:-1]}}}, sweep_dir / "multirun.yaml")
    child = holder(job)  # e.g. a dq-train resume=sw/0, or a worker that outlived its sweep
    assert sweep_in_process(args, tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    line = busy_line("cannot run", job, child.pid)
    failed = [row for row in err.splitlines() if row.startswith("dq-train: failed job 0 (")]
    assert len(failed) == 1 and f"seed=1): {line}" in failed[0]
    assert not (job / "run.json").exists()  # left alone
    assert read_json(sweep_dir / "sweep.json")["counts"] == {"failed": 1, "total": 1}

    sweep_holder = holder(sweep_dir)  # another dq-train -m of this sweep
    sweep_json = (sweep_dir / "sweep.json").read_bytes()
    assert sweep_in_process(args, tmp_path, monkeypatch) == 2
    since = read_json(sweep_dir / LOCK_FILE)["since"]
    line = busy_line("cannot sweep into", sweep_dir, sweep_holder.pid)
    assert capsys.readouterr().err == f"dq-train: error: {line}{since}\n"
    assert (sweep_dir / "sweep.json").read_bytes() == sweep_json

    sigkill(child)
    sigkill(sweep_holder)
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    assert "seed=1): ran, completed" in capsys.readouterr().out
    assert read_json(job / "run.json")["status"] == "completed"


def test_directory_names_differ_even_at_the_same_microsecond(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = datetime(2026, 11, 24, 5, 0, 0, 123456)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(layout, "datetime", Clock)
    monkeypatch.setattr(layout, "_last_stamp", None)  # what earlier tests in this process handed out
    stamps = [unique_stamp() for _ in range(3)]
    assert len(set(stamps)) == 3
    host = socket.gethostname().split(".")[0]
    assert stamps[0] == f"2026-11-24_05-00-00.123456_{host}-{os.getpid()}"
    assert stamps[2] == f"2026-11-24_05-00-00.123458_{host}-{os.getpid()}"  # never the same time twice


def test_hydra_names_run_and_sweep_directories_with_the_stamp() -> None:
    from hydra import compose, initialize_config_dir

    from dq.config import config_dir
    from dq.spec import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        hydra_cfg = compose("config", return_hydra_config=True).hydra
    suffix = f"_{socket.gethostname().split('.')[0]}-{os.getpid()}"
    assert str(hydra_cfg.run.dir).startswith("outputs/default/") and str(hydra_cfg.run.dir).endswith(suffix)
    assert str(hydra_cfg.sweep.dir).startswith("outputs/multirun/default/") and str(hydra_cfg.sweep.dir).endswith(
        suffix
    )


@pytest.mark.slow
def test_two_sweeps_started_at_once_into_one_outputs_root_both_complete_apart(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "dq.cli", "-m", *TINY_SWEEP, "seed=0,1", "logger=[jsonl,mlflow]"]
    first, second = (
        subprocess.Popen(
            [*command, "experiment_name=both"],
            cwd=tmp_path,
            env=child_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    )
    for process in (first, second):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    sweeps = sorted((tmp_path / "outputs" / "multirun" / "both").iterdir())
    assert len(sweeps) == 2
    for sweep_dir in sweeps:
        sweep = read_json(sweep_dir / "sweep.json")
        assert sweep["counts"] == {"completed": 2, "total": 2}
        own = sweep_dir.relative_to(tmp_path)  # as the sweep names its jobs: relative to where it started
        assert [job["run_dir"] for job in sweep["jobs"]] == [str(own / "0"), str(own / "1")]
        assert (sweep_dir / "jobs.csv").read_text().count("\n") == 3


def test_rerunning_a_failed_job_keeps_the_lock_file_it_holds(tmp_path: Path) -> None:
    """A failed job's results are cleared under its lock: deleting the lock file there would
    let another process lock a new file of that name while this one holds the old."""
    from dq.sweep.jobdir import clear_results

    write_json(tmp_path / "run.json", {"status": "failed"})
    (tmp_path / "checkpoints").mkdir()
    with hold(tmp_path, "cannot run"):
        inode = (tmp_path / LOCK_FILE).stat().st_ino
        clear_results(tmp_path)
        assert sorted(path.name for path in tmp_path.iterdir()) == [LOCK_FILE]
        assert (tmp_path / LOCK_FILE).stat().st_ino == inode
