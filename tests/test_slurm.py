"""``launcher=slurm`` on a real single-node SLURM cluster (scripts/slurm_cluster.sh): real
sbatch array jobs, real requeues, real signals from the scheduler and from scancel.

Every test is slow (each sweep starts Python and torch inside SLURM jobs) and skips with one
line where SLURM cannot run. The preset's values the tests need are overrides here
(``gpus_per_node=0`` and a small ``mem_gb`` for a CPU node, ``max_num_timeout`` for
requeues), so the tests hold whatever conf/launcher/slurm.yaml's defaults are.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

import dq
from conftest import compose_config
from dq.rundir.read import read_json
from run_checks import same_values
from slurm_cluster import Cluster, finish, slurm_cluster, slurm_job_id, wait_for_epochs

__all__ = ["slurm_cluster"]  # the fixture, imported for the tests below
pytestmark = pytest.mark.slow

RUN = (
    "dataset=adult",
    "model=mlp",
    "explain.enabled=false",
    "trainer.progress=false",
    "trainer.device=cpu",
    "report.html=false",
    "report.model_card=false",
    "eval.bootstrap=0",
)
# About 0.5-1 s an epoch on a shared 2-core machine: room for a signal to land mid-training.
LONG = (*RUN, "dataset.limit=4000", "trainer.epochs=12", "seed=0")
SLURM = (
    "launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=10",
    "hydra.launcher.max_num_timeout=3",
)


def without_times(record: dict) -> dict:
    return {key: value for key, value in record.items() if not key.startswith("time/")}


def epochs_of(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """LONG trained start to end in this process: the metrics an interrupted job must end with."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    dq.train(compose_config(LONG, fast=False), run_dir=run_dir, console=Console(quiet=True))
    return read_json(run_dir / "metrics.json")


def test_a_sweep_through_launcher_slurm_completes_and_is_summarised(slurm_cluster: Cluster, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = [*RUN, "dataset.limit=500", "trainer.epochs=2", "seed=0,1", *SLURM, f"hydra.sweep.dir={sweep_dir}"]
    code, stdout, stderr = finish(slurm_cluster.sweep(args, tmp_path), timeout_s=300)

    assert code == 0, stderr
    sweep = read_json(sweep_dir / "sweep.json")
    assert sweep["status"] == "finished" and sweep["counts"] == {"completed": 2, "total": 2}
    assert [[item for item in job["overrides"] if item.startswith("seed=")] for job in sweep["jobs"]] == [
        ["seed=0"],
        ["seed=1"],
    ]
    assert all(read_json(Path(job["run_dir"]) / "run.json")["status"] == "completed" for job in sweep["jobs"])
    assert len(list((sweep_dir / ".submitit").glob("*_1"))) == 1  # the jobs ran as array tasks
    assert "sweep: 2/2 done, 0 failed" in stdout
    header, row = (sweep_dir / "summary.csv").read_text().splitlines()[:2]
    assert dict(zip(header.split(","), row.split(","), strict=True))["n"] == "2"  # both seeds in the mean
    assert "Bypassing sacct error" not in stderr  # squeue answers where accounting is off


def interrupted_job(cluster: Cluster, tmp_path: Path, interrupt: list[str], *extra: str) -> tuple[Path, int]:
    """A one-job LONG sweep, interrupted by ``interrupt`` (a SLURM client command, the job id
    appended) after its second epoch, and run to its end; its job directory and the epochs
    metrics.jsonl had when the command ran."""
    sweep_dir = tmp_path / "sweep"
    process = cluster.sweep([*LONG, *SLURM, *extra, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    run_dir = sweep_dir / "0"
    before = wait_for_epochs(run_dir, 2, process)
    cluster.run(*interrupt, slurm_job_id(sweep_dir))
    code, _, stderr = finish(process, timeout_s=400)
    assert code == 0, stderr
    assert read_json(sweep_dir / "sweep.json")["counts"] == {"completed": 1, "total": 1}
    return run_dir, before


def assert_resumed_to_the_uninterrupted_result(run_dir: Path, before: int, uninterrupted: dict) -> None:
    info = read_json(run_dir / "run.json")
    epochs = epochs_of(run_dir)
    print(
        f"{run_dir}: {before} epochs before the requeue, resumed {len(info.get('resumed', []))}x, epochs after: {epochs}"
    )
    assert info["status"] == "completed" and info.get("resumed"), info
    assert epochs == list(range(1, int(uninterrupted["train/epochs_run"]) + 1))  # each epoch once, in order
    metrics = read_json(run_dir / "metrics.json")
    print(
        f"test/accuracy {metrics['test/accuracy']!r} (uninterrupted {uninterrupted['test/accuracy']!r}), "
        f"test/loss {metrics['test/loss']!r} (uninterrupted {uninterrupted['test/loss']!r})"
    )
    assert same_values(without_times(metrics), without_times(uninterrupted))


def test_scontrol_requeue_mid_training_resumes_from_last_pt_to_the_uninterrupted_metrics(
    slurm_cluster: Cluster, tmp_path: Path, uninterrupted: dict
) -> None:
    run_dir, before = interrupted_job(slurm_cluster, tmp_path, ["scontrol", "requeue"])
    assert_resumed_to_the_uninterrupted_result(run_dir, before, uninterrupted)


def test_a_job_cancelled_with_scancel_is_handed_back_interrupted_not_waited_for(
    slurm_cluster: Cluster, tmp_path: Path
) -> None:
    """scancel sends the SIGTERM that scontrol requeue sends, but no requeue follows: the job
    hands back its interrupted result and the sweep exits 75 with one line."""
    sweep_dir = tmp_path / "sweep"
    process = slurm_cluster.sweep([*LONG, *SLURM, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    wait_for_epochs(sweep_dir / "0", 2, process)
    slurm_cluster.run("scancel", slurm_job_id(sweep_dir))
    code, _, stderr = finish(process, timeout_s=120)

    assert code == 75, stderr
    assert read_json(sweep_dir / "sweep.json")["counts"] == {"interrupted": 1, "total": 1}
    assert read_json(sweep_dir / "0" / "run.json")["status"] == "interrupted"
    lines = [line for line in stderr.splitlines() if line.startswith("dq-train:")]
    assert len(lines) == 1 and lines[0].startswith("dq-train: interrupted: "), stderr


def test_preemption_with_the_schedulers_usr2_requeues_and_resumes_to_the_uninterrupted_metrics(
    slurm_cluster: Cluster, tmp_path: Path, uninterrupted: dict
) -> None:
    run_dir, before = interrupted_job(slurm_cluster, tmp_path, ["scancel", "--signal=USR2"])
    assert_resumed_to_the_uninterrupted_result(run_dir, before, uninterrupted)


def test_a_job_that_reaches_its_time_limit_is_requeued_and_resumes(slurm_cluster: Cluster, tmp_path: Path) -> None:
    """timeout_min=1: SLURM sends submitit's USR2 signal_delay_s before the limit (give or
    take its own minute of resolution); submitit requeues, and each life resumes from last.pt."""
    sweep_dir = tmp_path / "sweep"
    # 600 epochs, no early stop: about 175 s of training on a quiet core (0.29 s an epoch: 150
    # epochs finished inside one life there), about three times that on a loaded one; SLURM
    # checks limits about once a minute, so a life lasts 45-105 s and at least one requeue comes.
    long_enough = (*RUN, "dataset.limit=4000", "trainer.epochs=600", "trainer.early_stopping.enabled=false", "seed=0")
    # Up to 30 lives: on a loaded core the 600 epochs take ten or more (6 ran out there).
    limit = ("hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=15", "hydra.launcher.max_num_timeout=30")
    started = time.monotonic()
    process = slurm_cluster.sweep([*long_enough, *SLURM, *limit, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    code, _, stderr = finish(process, timeout_s=1200)
    elapsed = time.monotonic() - started

    assert code == 0, stderr
    info = read_json(sweep_dir / "0" / "run.json")
    epochs = epochs_of(sweep_dir / "0")
    print(f"time limit: resumed {len(info.get('resumed', []))}x in {elapsed:.0f} s; epochs {epochs[0]}..{epochs[-1]}")
    assert info["status"] == "completed" and info.get("resumed"), info
    assert epochs == list(range(epochs[0], epochs[-1] + 1)) and len(epochs) == len(set(epochs))


def test_a_job_killed_outright_ends_the_sweep_with_one_line_instead_of_a_hang(
    slurm_cluster: Cluster, tmp_path: Path
) -> None:
    """SIGKILL to the job's Python process (as the OOM killer sends it): no result file ever
    comes, and without accounting submitit cannot see the job end; dq asks squeue."""
    sweep_dir = tmp_path / "sweep"
    process = slurm_cluster.sweep([*LONG, "trainer.epochs=60", *SLURM, f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    run_dir = sweep_dir / "0"
    wait_for_epochs(run_dir, 1, process)
    os.kill(read_json(run_dir / "run.json")["pid"], signal.SIGKILL)
    killed = time.monotonic()
    code, _, stderr = finish(process, timeout_s=120)

    assert time.monotonic() - killed < 90
    assert code == 1
    lines = [line for line in stderr.splitlines() if line.startswith("dq-train:")]
    assert len(lines) == 1 and lines[0].startswith("dq-train: failed job 0 ("), stderr
    assert "its SLURM job ended without a result" in lines[0] and "resume it from last.pt" in lines[0]
    assert "Traceback" not in stderr
    sweep = read_json(sweep_dir / "sweep.json")
    assert sweep["status"] == "finished" and sweep["counts"] == {"failed": 1, "total": 1}
    assert read_json(run_dir / "sweep_job.json")["action"] == "lost"


@pytest.mark.parametrize(
    "request_, words",
    [
        ("hydra.launcher.gpus_per_node=1", "gres"),  # a GPU on a node without any
        ("hydra.launcher.cpus_per_task={too_many}", "cpu"),  # more CPUs than the node has
    ],
    ids=["gpu-on-a-cpu-node", "more-cpus-than-the-node"],
)
def test_an_impossible_request_is_one_line_and_the_sweep_records_stay_true(
    slurm_cluster: Cluster, tmp_path: Path, request_: str, words: str
) -> None:
    sweep_dir = tmp_path / "sweep"
    impossible = request_.format(too_many=slurm_cluster.cpus() + 1)
    args = [*RUN, "dataset.limit=500", "seed=0", *SLURM, impossible, f"hydra.sweep.dir={sweep_dir}"]
    code, _, stderr = finish(slurm_cluster.sweep(args, tmp_path), timeout_s=120)

    assert code != 0
    lines = [line for line in stderr.splitlines() if line.startswith("dq-train:")]
    assert len(lines) == 1 and words in lines[0].lower(), stderr
    assert stderr.strip().splitlines() == lines, stderr  # that line alone: no echo of sbatch's error
    assert "Traceback" not in stderr
    assert read_json(sweep_dir / "sweep.json")["status"] != "running"
