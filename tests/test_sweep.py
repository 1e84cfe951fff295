"""Sweeps: failure-tolerant jobs through Hydra's real launchers (joblib and submitit in
subprocesses, the basic launcher in-process), sweep.json, jobs.csv and the report, re-running a
sweep into its own directory, and the launcher presets' composed configs."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from conftest import sweep_in_process
from dq.cli import explain_error
from dq.config import config_dir
from dq.rundir.read import read_json
from dq.rundir.write import write_json
from dq.spec import register_schemas
from dq.sweep.jobdir import Action, decide
from dq.sweep.slurm_request import gpus_in

TINY = [
    "dataset=adult",
    "model=mlp",
    "dataset.limit=64",
    "trainer.epochs=1",
    "explain.enabled=false",
    "trainer.progress=false",
    "trainer.device=cpu",
]
BAD_LR = "optimizer.lr must be > 0, got -1.0"


def dq_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "dq.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def job_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "jobs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_joblib_sweep_finishes_the_other_jobs_and_lists_the_failed_one(tmp_path: Path) -> None:
    done = dq_train(["-m", *TINY, "launcher=joblib", "optimizer.lr=0.01,-1,0.001", "hydra.sweep.dir=sw"], tmp_path)
    sweep_dir = tmp_path / "sw"
    assert done.returncode == 1, done.stderr
    failed_job = " ".join([*TINY, "launcher=joblib", "optimizer.lr=-1"]).replace("false", "False")
    assert done.stderr.splitlines() == [f"dq-train: failed job 1 ({failed_job}): {BAD_LR}"]
    assert "sweep: 2/3 done, 1 failed, 0 interrupted, 0 not started (3 ran, 0 skipped" in done.stdout

    sweep = read_json(sweep_dir / "sweep.json")
    assert [(job["job"], job["status"], job["error"]) for job in sweep["jobs"]] == [
        (0, "completed", None),
        (1, "failed", BAD_LR),
        (2, "completed", None),
    ]
    assert sweep["counts"] == {"completed": 2, "failed": 1, "total": 3}
    assert sweep["jobs"][2]["overrides"][-1] == "optimizer.lr=0.001"
    assert sweep["jobs"][0]["metrics"] == read_json(sweep_dir / "0" / "metrics.json")

    rows = job_rows(sweep_dir)
    assert [(row["job"], row["status"], row["optimizer.lr"]) for row in rows] == [
        ("0", "completed", "0.01"),
        ("1", "failed", "-1"),
        ("2", "completed", "0.001"),
    ]
    assert float(rows[0]["test/accuracy"]) == sweep["jobs"][0]["metrics"]["test/accuracy"]
    assert rows[1]["test/accuracy"] == ""

    # The report at the root: one group per learning rate that completed, the failed job listed.
    with (sweep_dir / "summary.csv").open(newline="") as handle:
        groups = list(csv.DictReader(handle))
    assert [(row["optimizer.lr"], row["n"]) for row in groups] == [("0.001", "1"), ("0.01", "1")]
    assert float(groups[1]["test/accuracy/mean"]) == sweep["jobs"][0]["metrics"]["test/accuracy"]
    markdown = (sweep_dir / "summary.md").read_text()
    assert "## Runs not included" in markdown
    assert f"| 1 | failed | DQUserError: {BAD_LR} |" in markdown
    assert "\\toprule" in (sweep_dir / "summary.tex").read_text()
    assert "sweep: report in sw/summary.md" in done.stdout

    # Each job in its own numbered directory, run by one of the workers; the refused job
    # keeps Hydra's record and a failed run.json.
    runs = [read_json(sweep_dir / str(n) / "run.json") for n in range(3)]
    assert len({run["pid"] for run in runs}) >= 2  # joblib's worker processes
    assert [run["overrides"][-1] for run in runs] == ["optimizer.lr=0.01", "optimizer.lr=-1", "optimizer.lr=0.001"]
    assert runs[1]["status"] == "failed" and runs[1]["error"] == f"DQUserError: {BAD_LR}"
    assert (sweep_dir / "1" / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow
def test_submitit_local_sweep_runs_jobs_as_submitit_would_on_slurm(tmp_path: Path) -> None:
    done = dq_train(["-m", *TINY, "launcher=submitit_local", "seed=0,1", "hydra.sweep.dir=sw"], tmp_path)
    assert done.returncode == 0, done.stderr
    sweep = read_json(tmp_path / "sw" / "sweep.json")
    assert sweep["counts"] == {"completed": 2, "total": 2}
    assert [job["overrides"][-1] for job in sweep["jobs"]] == ["seed=0", "seed=1"]
    assert any((tmp_path / "sw" / ".submitit").iterdir())  # submitit's own job folders


def test_local_sweep_survives_a_failed_job_and_a_rerun_skips_what_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "optimizer.lr=-1,0.01", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 1
    sweep_dir = tmp_path / "sw"
    out, err = capsys.readouterr()
    assert f"optimizer.lr=-1): {BAD_LR}" in err
    assert "sweep: 0/2 done, 1 failed, 1 remaining" in out
    assert "sweep: 1/2 done, 1 failed, 0 remaining" in out
    metrics_file = sweep_dir / "1" / "metrics.json"
    before = (metrics_file.stat().st_mtime_ns, metrics_file.read_bytes())

    assert sweep_in_process(args, tmp_path, monkeypatch) == 1  # the bad job fails again
    out, err = capsys.readouterr()
    assert "(0 ran, 1 skipped, 0 resumed, 1 reran)" in out
    assert "optimizer.lr=0.01): skipped (completed earlier)" in out
    assert "optimizer.lr=-1): reran, failed" in out
    assert (metrics_file.stat().st_mtime_ns, metrics_file.read_bytes()) == before
    sweep = read_json(sweep_dir / "sweep.json")
    assert [(job["status"], job["action"]) for job in sweep["jobs"]] == [("failed", "reran"), ("skipped", "skipped")]
    assert [row["status"] for row in job_rows(sweep_dir)] == ["failed", "skipped"]


def test_sweep_jobs_leave_their_own_report_to_dq_report_unless_per_run_is_always(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "eval.bootstrap=0", "report.per_run=auto,always", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    deferred, written = tmp_path / "sw" / "0", tmp_path / "sw" / "1"
    assert not (deferred / "report.html").exists() and not (deferred / "model_card.md").exists()
    assert (written / "report.html").is_file() and (written / "model_card.md").is_file()
    out = capsys.readouterr().out
    line = "sweep: a job's own report.html and model_card.md are left to dq-report (report.per_run=auto), e.g. dq-report sw/0"
    assert line in out.splitlines()

    from dq.report.command import main as dq_report

    dq_report([str(deferred)])  # what the line says: the job's own page, made when wanted
    assert "Run 0" in (deferred / "report.html").read_text()
    assert (deferred / "model_card.md").is_file()


def test_a_sweep_that_writes_every_jobs_report_says_nothing_about_dq_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "eval.bootstrap=0", "report.html=false", "report.model_card=false", "seed=0", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    assert "left to dq-report" not in capsys.readouterr().out


def test_a_diverged_job_is_recorded_failed_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # SGD at lr 1e30 makes the loss NaN in epoch 2: a failure while training, not before.
    args = [*TINY, "trainer.epochs=2", "optimizer=sgd", "optimizer.lr=1e30,0.01", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    line = "TrainingDiverged: epoch 2, batch 1 of 1: training loss term 'task' is nan; "
    assert f"optimizer=sgd optimizer.lr=1e+30): {line}" in err
    sweep_dir = tmp_path / "sw"
    assert read_json(sweep_dir / "0" / "run.json")["error"].startswith(line)
    assert len((sweep_dir / "0" / "metrics.jsonl").read_text().splitlines()) == 1  # epoch 1 kept
    assert [job["status"] for job in read_json(sweep_dir / "sweep.json")["jobs"]] == ["failed", "completed"]


def test_a_rerun_refuses_a_directory_that_holds_another_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job_dir = tmp_path / "sw" / "0"
    write_json(job_dir / "run.json", {"status": "completed", "overrides": ["seed=7"]})
    # The sweep directory records this very sweep (dq.rundir.claim refuses another sweep's whole).
    OmegaConf.save({"hydra": {"overrides": {"task": [*TINY, "seed=1"]}}}, tmp_path / "sw" / "multirun.yaml")
    assert sweep_in_process([*TINY, "seed=1", "hydra.sweep.dir=sw"], tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert f"{job_dir} holds another job's run (seed=7); use a new hydra.sweep.dir" in err
    assert read_json(job_dir / "run.json") == {"status": "completed", "overrides": ["seed=7"]}  # untouched


def test_a_job_left_running_or_interrupted_is_resumed_from_last_pt_or_else_rerun(tmp_path: Path) -> None:
    """decide() runs with the job's lock held (tests/test_concurrency.py: a live holder is
    refused before it), so a run.json that says running is a dead process's."""
    host = socket.gethostname()
    cases = {
        "running": ({"status": "running", "pid": os.getpid(), "host": host}, Action.resume),
        "elsewhere": ({"status": "running", "pid": 1, "host": "another-host"}, Action.resume),
        "interrupted": ({"status": "interrupted", "pid": os.getpid(), "host": host}, Action.resume),
        "failed": ({"status": "failed"}, Action.rerun),
        "completed": ({"status": "completed"}, Action.skip),
    }
    for name, (run, expected) in cases.items():
        write_json(tmp_path / name / "run.json", {**run, "overrides": ["seed=1"]})
        (tmp_path / name / "checkpoints").mkdir()
        (tmp_path / name / "checkpoints" / "last.pt").write_bytes(b"")
        assert decide(tmp_path / name, ["seed=1", "launcher=joblib"])[0] is expected, name
    (tmp_path / "running" / "checkpoints" / "last.pt").unlink()  # died before its first epoch ended
    assert decide(tmp_path / "running", ["seed=1"])[0] is Action.rerun
    assert decide(tmp_path / "nothing", ["seed=1"])[0] is Action.run


def test_an_interrupted_job_is_resumed_from_last_pt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "trainer.epochs=2", "seed=3", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    run_json = tmp_path / "sw" / "0" / "run.json"
    write_json(run_json, {**read_json(run_json), "status": "interrupted"})
    capsys.readouterr()
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    assert "seed=3): resumed, completed" in capsys.readouterr().out
    assert read_json(run_json)["status"] == "completed"


def launcher_config(choice: str):
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[f"launcher={choice}"], return_hydra_config=True).hydra


def test_launcher_presets_select_hydras_launchers() -> None:
    slurm = launcher_config("slurm").launcher
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    # No GPU unless asked for (a CPU-only partition refuses any --gpus request), and a job
    # that reaches its time limit is requeued (Hydra's plugin default, 0, never requeues).
    assert (slurm.partition, slurm.gpus_per_node, slurm.cpus_per_task, slurm.mem_gb) == (None, None, 4, 16)
    assert (slurm.timeout_min, slurm.array_parallelism, slurm.signal_delay_s) == (240, 32, 120)
    assert slurm.max_num_timeout == 3
    joblib = launcher_config("joblib").launcher
    assert joblib._target_ == "hydra_plugins.dq_process_launcher.launcher.DQProcessLauncher" and joblib.n_jobs == -1
    assert launcher_config("local").launcher._target_.endswith("BasicLauncher")
    assert launcher_config("submitit_local").launcher._target_.endswith("submitit_launcher.LocalLauncher")
    assert launcher_config("local").callbacks.sweep_summary._target_ == "dq.sweep.callback.SweepSummary"

    with pytest.raises(MissingConfigException) as caught:
        launcher_config("ray")
    assert explain_error(caught.value) == "unknown launcher 'ray'; allowed: joblib, local, slurm, submitit_local"


def test_the_gpus_of_a_slurm_node_are_read_from_sinfos_generic_resources() -> None:
    # What dq.sweep.slurm_request compares hydra.launcher.gpus_per_node with, before sbatch.
    assert gpus_in("(null)") == 0
    assert gpus_in("gpu:2") == 2
    assert gpus_in("gpu:a100:4(S:0-1),gpu:t4:1") == 5
    assert gpus_in("tmpdisk:100,gpu:1(S:0)") == 1


def test_a_sweep_refused_before_its_first_job_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sweep_in_process(["dataset=adult", "trainer.epochz=1,2", "hydra.sweep.dir=sw"], tmp_path, monkeypatch) == 2
    assert capsys.readouterr().err.startswith(
        "dq-train: error: unknown key 'trainer.epochz' (nearest: 'trainer.epochs'); keys of trainer: epochs"
    )
    assert not (tmp_path / "sw").exists()
