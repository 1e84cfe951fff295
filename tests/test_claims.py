"""A directory that holds a run or a sweep is written only by a command that continues it
(issue 21, point 1; dq.rundir.claim): dq-train claims hydra.run.dir / hydra.sweep.dir before
Hydra writes there, and a refusal is one line, exit 2, with every byte there unchanged.
Also: a resume whose last.pt does not fit the model, and a resume override of a key that
the saved run has but the default config lacks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dq
from conftest import compose_config, sweep_in_process
from dq.rundir.read import read_json
from dq.rundir.write import write_json
from test_concurrency import TINY_SWEEP, busy_line, child_env, quiet

DIGITS = ("dataset=digits", "model=mlp", "dataset.limit=64", "explain.enabled=false")
QUIET_CLI = ("trainer.progress=false", "report.html=false", "report.model_card=false")


def tree(directory: Path) -> dict[str, str]:
    """Every file and folder under ``directory`` (the lock file included): path → sha256."""
    found = {}
    for path in sorted(directory.rglob("*")):
        relative = str(path.relative_to(directory))
        found[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def dq_train(argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``dq-train <argv>`` in this process; its exit code."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", ["dq-train", *argv])
    from dq.cli import train_main

    try:
        train_main()
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def finished_run(run_dir: Path, *overrides: str) -> dict[str, str]:
    dq.train(compose_config([*DIGITS, *overrides]), run_dir=run_dir, console=quiet())
    assert read_json(run_dir / "run.json")["status"] == "completed"
    return tree(run_dir)


def test_a_new_run_into_a_finished_run_or_a_sweep_is_refused_and_nothing_there_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    before = finished_run(run_dir)
    for argv in (
        [*DIGITS, "seed=3", f"hydra.run.dir={run_dir}"],
        ["resume=" + str(run_dir), f"hydra.run.dir={run_dir}/.."],
    ):
        assert dq_train(argv, tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"dq-train: error: cannot run in {run_dir}: it already holds a run (run.json: completed); "
        f"continue it with dq-train resume={run_dir}, or choose a new hydra.run.dir",
        f"dq-train: error: cannot run in {tmp_path}: it already holds other files (run); choose a new hydra.run.dir",
    ]
    assert tree(run_dir) == before
    assert not (tmp_path / "outputs").exists()

    assert dq_train(["-m", *DIGITS, "seed=0,1", f"hydra.sweep.dir={run_dir}"], tmp_path, monkeypatch) == 2
    assert capsys.readouterr().err == (
        f"dq-train: error: cannot sweep into {run_dir}: it already holds a run (run.json: completed); "
        f"continue it with dq-train resume={run_dir}, or choose a new hydra.sweep.dir\n"
    )
    assert tree(run_dir) == before


def test_resume_into_its_own_directory_keeps_its_hydra_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hydra would write the command line's config (the default model, not the run's) into
    .hydra/; the resume writes the run's own, with trainer.epochs grown."""
    run_dir = tmp_path / "run"
    argv = [
        *DIGITS,
        *QUIET_CLI,
        "trainer.epochs=1",
        "trainer.device=cpu",
        "model.hidden=[16]",
        f"hydra.run.dir={run_dir}",
    ]
    assert dq_train(argv, tmp_path, monkeypatch) == 0
    hydra_yaml = (run_dir / ".hydra" / "hydra.yaml").read_bytes()
    argv = [f"resume={run_dir}", f"hydra.run.dir={run_dir}", "trainer.epochs=2", *QUIET_CLI]
    assert dq_train(argv, tmp_path, monkeypatch) == 0
    assert (run_dir / ".hydra" / "hydra.yaml").read_bytes() == hydra_yaml
    assert "- 16\n" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert read_json(run_dir / "metrics.json")["train/epochs_run"] == 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", None),
        ("/proc/x", "No such file or directory"),
        ("/dev/null", "it, or a folder above it, is a file, not a directory"),
        ("/dev/null/x", "it, or a folder above it, is a file, not a directory"),
        ("{tmp}/" + "n" * 300, "File name too long"),
    ],
)
def test_a_run_dir_that_cannot_be_a_directory_is_one_line(
    value: str, reason: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    value = value.format(tmp=tmp_path)
    assert dq_train([*DIGITS, f"hydra.run.dir={value}"], tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    if reason is None:
        expected = "hydra.run.dir is empty; give it a directory of its own (by default under outputs/)"
    else:
        expected = f"cannot use hydra.run.dir={value}: {reason}; give a directory that dq-train may create or use"
    assert err == f"dq-train: error: {expected}\n"
    assert sorted(os.listdir(tmp_path)) == []  # nothing written in the current directory either


def test_a_different_sweep_into_a_sweep_directory_is_refused_whole_and_the_same_one_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_dir = tmp_path / "sw"
    first = [*TINY_SWEEP, "seed=0", "hydra.sweep.dir=sw"]
    # A sweep killed in its start, before Hydra's multirun.yaml: nothing ran, so any sweep may start there.
    write_json(sweep_dir / "sweep.json", {"status": "running", "plan": [["seed=9"]]})
    assert sweep_in_process(first, tmp_path, monkeypatch) == 0
    capsys.readouterr()
    before = tree(sweep_dir)
    assert sweep_in_process([*TINY_SWEEP, "seed=1", "hydra.sweep.dir=sw"], tmp_path, monkeypatch) == 2
    recorded = " ".join(first[:-1])
    assert capsys.readouterr().err == (
        f"dq-train: error: cannot sweep into {sweep_dir}: it already holds a sweep (overrides: {recorded}); "
        "finish it with dq-train -m and those same overrides, or choose a new hydra.sweep.dir\n"
    )
    assert tree(sweep_dir) == before
    assert dq_train([*DIGITS, "hydra.run.dir=sw"], tmp_path, monkeypatch) == 2  # nor a single run
    assert capsys.readouterr().err.startswith(f"dq-train: error: cannot run in {sweep_dir}: it already holds a sweep (")
    assert tree(sweep_dir) == before

    assert sweep_in_process([*first, "launcher=local"], tmp_path, monkeypatch) == 0  # the same sweep
    assert read_json(sweep_dir / "sweep.json")["actions"] == {"skipped": 1}


@pytest.mark.slow  # 27 s on a loaded 2-core machine: a real dq-train in training, then SIGTERM
def test_a_second_command_into_a_live_runs_directory_is_refused_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real dq-train trains; a second one with another model aims at its directory while
    it is stopped (SIGSTOP: its files hold still to be hashed), then it goes on and stops on
    SIGTERM with its own config (on main the second command had rewritten .hydra/config.yaml)."""
    run_dir = tmp_path / "live"
    live = subprocess.Popen(
        [sys.executable, "-m", "dq.cli", *DIGITS, *QUIET_CLI, "trainer.epochs=100000", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists():  # training: past its start
            assert live.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        live.send_signal(signal.SIGSTOP)
        before = tree(run_dir)
        argv = [*DIGITS, "model.hidden=[16]", f"hydra.run.dir={run_dir}"]
        assert dq_train(argv, tmp_path, monkeypatch) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"dq-train: error: {busy_line('cannot run in', run_dir, live.pid)}")
        assert len(err.splitlines()) == 1
        assert tree(run_dir) == before
        live.send_signal(signal.SIGCONT)
        live.send_signal(signal.SIGTERM)
        assert live.wait(timeout=120) == 75, live.stderr.read() if live.stderr else ""
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert read_json(run_dir / "run.json")["status"] == "interrupted"
    assert "- 256\n" in (run_dir / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow
def test_two_processes_racing_for_one_new_directory_one_wins(tmp_path: Path) -> None:
    run_dir = tmp_path / "new"
    command = [sys.executable, "-m", "dq.cli", *DIGITS, *QUIET_CLI, "trainer.epochs=1", f"hydra.run.dir={run_dir}"]
    racers = [
        subprocess.Popen(
            command, cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = sorted(
        (racer.wait(timeout=300), racer.stderr.read() if racer.stderr else "", racer.pid) for racer in racers
    )
    (won, _, winner), (lost, line, _) = results
    assert (won, lost) == (0, 2)
    assert line.startswith(f"dq-train: error: cannot run in {run_dir}: it ") and len(line.splitlines()) == 1
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed" and info["pid"] == winner


def test_a_resume_whose_last_pt_does_not_fit_the_model_is_one_line_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, other = tmp_path / "run", tmp_path / "other"
    finished_run(other, "model.hidden=[16]")
    finished_run(run_dir, "trainer.epochs=2")
    shutil.copyfile(other / "checkpoints" / "last.pt", run_dir / "checkpoints" / "last.pt")  # not this run's
    # With checksums.json the swap is "has changed since it was written" (tests/test_integrity.py);
    # without it (a run from before checksums) the shapes are what tells.
    (run_dir / "checksums.json").unlink()
    before = tree(run_dir)
    assert dq_train([f"resume={run_dir}", "trainer.epochs=7", *QUIET_CLI], tmp_path, monkeypatch) == 2
    last = run_dir / "checkpoints" / "last.pt"
    assert capsys.readouterr().err == (
        f"dq-train: error: cannot resume: {last} does not fit the run's model "
        f"(body.1.weight is [16, 64] there, [256, 64] in the model); put back the run's own last.pt, "
        f"or remove {run_dir} to start over\n"
    )
    assert tree(run_dir) == before  # run.json still completed, metrics.jsonl not cut back


def test_resume_names_a_saved_key_the_default_config_lacks_with_both_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "fair"
    overrides = ("+experiment=fair_adv", "dataset.limit=64", "explain.enabled=false", "eval.robust.limit=16")
    dq.train(compose_config(overrides), run_dir=run_dir, console=quiet())
    before = tree(run_dir)
    assert dq_train([f"resume={run_dir}", "regularizer.fairness.weight=2"], tmp_path, monkeypatch) == 2
    assert capsys.readouterr().err == (
        "dq-train: error: regularizer.fairness.weight=2 conflicts with the run's saved regularizer.fairness.weight=1.0; "
        "when resuming only trainer.epochs may change (to grow)\n"
    )
    assert tree(run_dir) == before
    assert not (tmp_path / "outputs").exists()
