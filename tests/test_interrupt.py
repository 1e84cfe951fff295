"""Every stop by a person or a scheduler is an interruption that resumes exactly (issue 20).

Real ``dq-train`` processes and real signals, each sent once a known point is reached
(run.json or a metrics.jsonl line on disk): Ctrl-C (exit 130), a second Ctrl-C, SIGTERM
before the first batch and twice in quick succession (75), a sweep stopped by Ctrl-C and
run again, and submitit's pre-emption signal (SIGUSR2, whose handler requeues the job).
Each resumed run ends with the metrics of one never stopped (times aside).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dq
from conftest import compose_config
from dq.engine import preemption
from dq.rundir.read import read_json
from dq.rundir.resume import read_last
from test_resume import (
    SUBPROCESS_RUN,
    assert_same_run,
    dq_train,
    dq_train_process,
    quiet,
    started_run,
    wait_for_epochs,
)

# Two epochs of about 20 batches each (a few milliseconds a batch on CPU).
RUN = (*(item for item in SUBPROCESS_RUN if not item.startswith("trainer.epochs=")), "trainer.epochs=2")
LINE = r"dq-train: interrupted: stopped by {signal} (in epoch \d, after batch \d+ of \d+|after epoch \d); "


@pytest.fixture(autouse=True)
def no_leftover_stop_request() -> Iterator[None]:
    preemption.clear_stop_request()
    yield
    preemption.clear_stop_request()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUN trained start to end, in-process (the same config dq-train composes)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    dq.train(compose_config(RUN, fast=False), run_dir=run_dir, console=quiet())
    return run_dir


def stopped(process: subprocess.Popen) -> tuple[int, list[str]]:
    """The process's exit code and its stderr lines, once it ended."""
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr.strip().splitlines()


def resumes_to(run_dir: Path, reference: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``dq-train resume=<run_dir>`` completes, with the reference run's metrics."""
    done = dq_train([f"resume={run_dir}"], cwd)
    assert done.returncode == 0, done.stderr
    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed" and len(info["resumed"]) == 1 and "stopped_at" not in info
    assert_same_run(run_dir, reference)
    return done


def test_ctrl_c_stops_after_its_batch_exits_130_interrupted_and_resumes_exactly(tmp_path: Path, uninterrupted) -> None:
    process = dq_train_process(list(RUN), tmp_path)
    run_dir = started_run(tmp_path)
    wait_for_epochs(run_dir, 1)
    process.send_signal(signal.SIGINT)
    code, lines = stopped(process)

    assert code == 130, lines
    assert len(lines) == 1 and re.match(LINE.format(signal="SIGINT"), lines[0]), lines  # no traceback
    assert lines[0].endswith(f"; continue with: dq-train resume={run_dir}")
    info = read_json(run_dir / "run.json")
    assert info["status"] == "interrupted" and info["error"] == lines[0].removeprefix("dq-train: interrupted: ")
    where = info["stopped_at"]
    assert where["signal"] == "SIGINT" and where["epoch"] in (1, 2) and 0 <= where["batch"] < where["batches"]
    assert not (run_dir / "metrics.json").exists()
    resumes_to(run_dir, uninterrupted, tmp_path)


# Adversarial training: batches of about a tenth of a second, so a second Ctrl-C lands in one.
SLOW = ("regularizer=[adversarial]", "regularizer.adversarial.steps=40", "dataset.limit=300")


def wait_until_delivered(pid: int, signum: int) -> None:
    """Until the kernel has handed ``signum`` to process ``pid`` (no longer pending in
    /proc/<pid>/status), so a signal sent next cannot merge with it in the kernel."""
    bit = 1 << (signum - 1)
    status = Path(f"/proc/{pid}/status")
    for _ in range(300000):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except FileNotFoundError:  # the process ended
            return
        if not (int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & bit:
            return
        time.sleep(0.0005)
    raise AssertionError(f"signal {signum} never reached process {pid}")


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_the_run_is_still_interrupted_and_resumes(tmp_path: Path) -> None:
    """The first Ctrl-C is sent in epoch 2's batches: after epoch 1's end is on disk
    (last.pt), a quarter of epoch 1's own measured time later (its 4 batches are most of
    it), so however loaded the machine the signal lands in a batch, not in an epoch's end.
    Once the kernel delivered it, Ctrl-C is pressed again every 2 ms until the process
    ends: Python runs a handler once for signals that arrive together, so one second signal
    sent at a fixed moment could merge with the first; the batch lasts a hundred times
    longer than the gap, so a later one lands in it."""
    # Six epochs (early stopping needs five without gain): which epoch the signals land in
    # is read back, not assumed.
    args = [*(item for item in RUN if not item.startswith("trainer.epochs=")), *SLOW, "trainer.epochs=6"]
    reference = tmp_path / "reference"
    dq.train(compose_config(args, fast=False), run_dir=reference, console=quiet())
    process = dq_train_process(args, tmp_path)
    run_dir = started_run(tmp_path)
    wait_for_epochs(run_dir, 1)
    epoch_s = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["time/epoch_s"]
    for _ in range(60000):
        if (run_dir / "checkpoints" / "last.pt").is_file():
            break
        time.sleep(0.001)
    time.sleep(epoch_s / 4)
    process.send_signal(signal.SIGINT)
    wait_until_delivered(process.pid, signal.SIGINT)
    for _ in range(100000):  # 200 s at most; stopped() then says what the process printed
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGINT)
        time.sleep(0.002)
    code, lines = stopped(process)

    assert code == 130, lines
    assert len(lines) == 1, lines
    assert re.match(
        r"dq-train: interrupted: stopped by a second SIGINT in epoch \d+, during batch \d+ of \d+; ", lines[0]
    )
    info = read_json(run_dir / "run.json")
    last = read_last(run_dir)
    assert info["status"] == "interrupted" and info["stopped_at"]["epoch"] == last["epoch"] + 1
    assert last["partial"] is None  # the end of the epoch before: nothing half-done
    resumes_to(run_dir, reference, tmp_path)


@pytest.mark.slow
def test_sigterm_before_the_first_batch_exits_75_and_resume_starts_from_the_beginning(
    tmp_path: Path, uninterrupted
) -> None:
    """SIGTERM as soon as Hydra made the run directory (the data not loaded yet): no
    last.pt exists, and ``resume=`` trains the run from its start, saying so."""
    process = dq_train_process(list(RUN), tmp_path)
    for _ in range(30000):
        made = list((tmp_path / "outputs").glob("*/*/.hydra/config.yaml"))
        if made:
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    code, lines = stopped(process)
    run_dir = made[0].parent.parent

    assert code == 75, lines
    assert lines == [
        f"dq-train: interrupted: stopped by SIGTERM before its first batch; continue with: dq-train resume={run_dir}"
    ]
    assert read_json(run_dir / "run.json")["status"] == "interrupted"
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    done = resumes_to(run_dir, uninterrupted, tmp_path)
    assert f"{run_dir}: stopped before its first checkpoint; training it from the beginning" in done.stdout


@pytest.mark.slow
def test_two_sigterms_50_ms_apart_still_exit_75_and_resume_exactly(tmp_path: Path, uninterrupted) -> None:
    process = dq_train_process(list(RUN), tmp_path)
    run_dir = started_run(tmp_path)
    wait_for_epochs(run_dir, 1)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    if process.poll() is None:  # (the first may have ended it already)
        process.send_signal(signal.SIGTERM)
    code, lines = stopped(process)

    assert code == 75, lines
    assert len(lines) == 1 and re.match(LINE.format(signal="SIGTERM"), lines[0]), lines
    assert read_json(run_dir / "run.json")["status"] == "interrupted"
    resumes_to(run_dir, uninterrupted, tmp_path)


def sweep_args(sweep_dir: Path, *extra: str) -> list[str]:
    return ["-m", *RUN, "optimizer.lr=0.001,0.002", f"hydra.sweep.dir={sweep_dir}", *extra]


@pytest.mark.slow
def test_a_sweep_stopped_by_ctrl_c_records_its_jobs_and_the_same_command_resumes_the_job(
    tmp_path: Path, uninterrupted
) -> None:
    """Job 0 (optimizer.lr=0.001, RUN's own value) is stopped in its first epochs; job 1 does
    not start. The same command again resumes job 0 from last.pt and runs job 1."""
    sweep_dir = tmp_path / "sweep"
    process = dq_train_process(sweep_args(sweep_dir), tmp_path)
    wait_for_epochs(sweep_dir / "0", 1, process)
    process.send_signal(signal.SIGINT)
    code, lines = stopped(process)

    assert code == 130, lines
    assert lines == [
        "dq-train: interrupted: sweep stopped by SIGINT, 2 job(s) interrupted or not started; "
        "run the same command again to resume them"
    ]
    sweep = read_json(sweep_dir / "sweep.json")
    assert sweep["status"] == "finished" and [job["status"] for job in sweep["jobs"]] == ["interrupted"] * 2
    assert sweep["jobs"][0]["error"].startswith("RunInterrupted: stopped by SIGINT ")
    assert (sweep_dir / "jobs.csv").read_text().splitlines()[1].startswith("0,interrupted,")
    assert read_json(sweep_dir / "0" / "run.json")["status"] == "interrupted"

    again = dq_train(sweep_args(sweep_dir), tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_json(sweep_dir / "0" / "sweep_job.json")["action"] == "resumed"
    assert read_json(sweep_dir / "1" / "sweep_job.json")["action"] == "ran"
    assert len(read_json(sweep_dir / "0" / "run.json")["resumed"]) == 1
    assert_same_run(sweep_dir / "0", uninterrupted)


@pytest.mark.slow
def test_submitit_preemption_signal_stops_after_the_batch_and_its_requeued_job_resumes(
    tmp_path: Path, uninterrupted
) -> None:
    """``launcher=submitit_local``: SIGUSR2 (the SLURM preset's pre-emption and time-limit
    signal) to the job's process. dq stops after the batch and records the job interrupted,
    then gives the signal to submitit's handler, which requeues the job (its own SystemExit);
    the requeued process resumes the run from last.pt."""
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *RUN, "trainer.epochs=4", "launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}"]
    reference = tmp_path / "reference"
    dq.train(compose_config([*RUN, "trainer.epochs=4"], fast=False), run_dir=reference, console=quiet())
    process = dq_train_process(args, tmp_path)
    job_dir = sweep_dir / "0"
    for _ in range(60000):
        if (job_dir / "run.json").is_file():
            break
        time.sleep(0.005)
    pid = read_json(job_dir / "run.json")["pid"]
    wait_for_epochs(job_dir, 1, process)
    os.kill(pid, signal.SIGUSR2)
    code, lines = stopped(process)

    assert code == 0, lines
    info = read_json(job_dir / "run.json")
    assert info["status"] == "completed" and len(info["resumed"]) == 1 and info["pid"] != pid
    assert read_json(job_dir / "sweep_job.json")["action"] == "resumed"
    logs = "".join(path.read_text() for path in sweep_dir.glob(".submitit/*/*_log.out"))
    assert re.search(
        r"ran, interrupted: RunInterrupted: stopped by SIGUSR2 (in epoch \d, after batch|after epoch)", logs
    )
    assert "Requeued job" in logs
    assert_same_run(job_dir, reference)
