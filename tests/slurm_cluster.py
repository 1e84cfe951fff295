"""A real single-node SLURM cluster for the tests (scripts/slurm_cluster.sh), and how to run
``dq-train -m ... launcher=slurm`` against it.

The ``slurm_cluster`` fixture brings the cluster up once per test session (each pytest-xdist
worker its own, in its own folder and on its own ports) and always down at the end. Where
SLURM cannot run (no slurmctld on PATH, not root) the tests skip with one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dq

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.sh"


def why_no_slurm() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        return "SLURM tests skipped: no slurmctld/munged on PATH (as root: apt-get install slurm-wlm munge; make setup does)"
    if os.geteuid() != 0:
        return "SLURM tests skipped: the single-node cluster needs root (scripts/slurm_cluster.sh)"
    return None


@dataclass(frozen=True)
class Cluster:
    folder: Path
    env: dict[str, str]  # os.environ with SLURM_CONF and dq's PYTHONPATH

    def run(self, *command: str) -> str:
        """A SLURM client command (squeue, scontrol, scancel) against this cluster; its stdout."""
        return subprocess.run(command, env=self.env, check=True, capture_output=True, text=True, timeout=60).stdout

    def cpus(self) -> int:
        """The node's CPUs, as slurm.conf declares them."""
        return int(self.run("sinfo", "--noheader", "--format=%c").split()[0])

    def sweep(self, args: list[str], cwd: Path) -> subprocess.Popen:
        """``dq-train -m <args>`` as its own process, stdout and stderr piped."""
        command = [sys.executable, "-m", "dq.cli", "-m", *args]
        return subprocess.Popen(
            command, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = why_no_slurm()
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    try:
        up = subprocess.run([str(SCRIPT), "up", str(folder)], capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            pytest.skip(f"SLURM tests skipped: the cluster did not start: {up.stderr.strip().splitlines()[-1:]}")
        conf = up.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
        env = {**os.environ, "SLURM_CONF": conf, "PYTHONPATH": str(Path(dq.__file__).parents[1]), "COLUMNS": "200"}
        env.pop("HYDRA_FULL_ERROR", None)
        yield Cluster(folder, env)
    finally:
        subprocess.run([str(SCRIPT), "down", str(folder)], capture_output=True, timeout=120)


def slurm_job_id(sweep_dir: Path) -> str:
    """The SLURM job id of a one-job sweep (submitit's folder for it under .submitit/)."""
    for _ in range(600):
        found = sorted(path.name for path in (sweep_dir / ".submitit").glob("*") if path.is_dir())
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no job submitted under {sweep_dir / '.submitit'}")


def wait_for_epochs(run_dir: Path, count: int, process: subprocess.Popen, timeout_s: float = 300) -> int:
    """Until ``run_dir``'s metrics.jsonl has at least ``count`` epochs; how many it has then."""
    path = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = path.read_text().count("\n") if path.is_file() else 0
        if done >= count:
            return done
        if process.poll() is not None:
            raise AssertionError(f"dq-train ended ({process.returncode}) before epoch {count}: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} epochs in {timeout_s} s")


def finish(process: subprocess.Popen, timeout_s: float) -> tuple[int, str, str]:
    """The sweep's exit code, stdout and stderr; a sweep still running after ``timeout_s`` is
    killed and the test fails saying so (a hang is the failure some tests look for)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"dq-train -m still running after {timeout_s} s; stderr ends: {stderr[-2000:]}") from None
    return process.returncode, stdout, stderr
