"""Launchers with real processes and real signals: launcher=joblib's workers (a job whose
worker is SIGKILLed fails alone, the workers die with their dq-train, they never import a
module from the directory the sweep starts in, a worker's jobs give the metrics each job
gives alone, a job stopped by SIGTERM does not stop the worker's next one), the SLURM
preset's submission and a launcher that cannot submit, and a launcher named without -m."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from omegaconf import OmegaConf
from submitit.slurm.slurm import _make_sbatch_string

from conftest import sweep_in_process
from dq.cli import train_main
from dq.rundir.read import read_json
from dq.sweep import processes
from dq.sweep.processes import worker_command
from run_checks import same_values
from test_sweep import TINY, job_rows, launcher_config

DQ_TRAIN = str(Path(sys.executable).parent / "dq-train")  # the console script, as a user runs it
LONG = "trainer.epochs=100000"
T = TypeVar("T")  # a job that trains until it is killed


def start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [DQ_TRAIN, "-m", *TINY, "launcher=joblib", "hydra.sweep.dir=sw", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def job_processes(parent: int) -> dict[int, int]:
    """Worker number → pid of each live ``dq.sweep.worker`` process that ``parent`` started
    (worker 0 runs job 0 first, worker 1 job 1, ...)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        if ppid == parent and "dq.sweep.worker" in argv and alive(int(entry.name)):
            found[int(argv[argv.index("dq.sweep.worker") + 1])] = int(entry.name)
    return found


def wait_for(condition: Callable[[], T], what: str, timeout: float = 120) -> T:
    """``condition()``'s first true value, looked for every 0.2 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def training(run_dir: Path) -> bool:
    try:
        return read_json(run_dir / "run.json")["status"] == "running"
    except (OSError, ValueError):
        return False


@pytest.mark.slow
def test_a_sigkilled_job_process_fails_its_job_only(tmp_path: Path) -> None:
    sweep = start_sweep(["hydra.launcher.n_jobs=2", f"{LONG},1,1"], tmp_path)
    try:
        wait_for(lambda: training(tmp_path / "sw" / "0"), "job 0 to train")
        os.kill(job_processes(sweep.pid)[0], signal.SIGKILL)  # as the out-of-memory killer would
        out, err = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 1, err
    overrides = " ".join(LONG if item.startswith("trainer.epochs=") else item for item in TINY)
    assert err.splitlines() == [
        f"dq-train: failed job 0 ({overrides.replace('false', 'False')} launcher=joblib): worker killed by SIGKILL"
    ]
    assert "sweep: 2/3 done, 1 failed, 0 interrupted, 0 not started (3 ran" in out
    sw = tmp_path / "sw"
    jobs = read_json(sw / "sweep.json")["jobs"]
    assert [(job["status"], job["error"]) for job in jobs] == [
        ("failed", "worker killed by SIGKILL"),
        ("completed", None),
        ("completed", None),
    ]
    assert [row["status"] for row in job_rows(sw)] == ["failed", "completed", "completed"]
    run = read_json(sw / "0" / "run.json")
    assert (run["status"], run["error"]) == ("failed", "worker killed by SIGKILL")
    assert run["end"] is not None


@pytest.mark.slow
def test_job_processes_die_with_their_sweep(tmp_path: Path) -> None:
    sweep = start_sweep(["hydra.launcher.n_jobs=2", LONG, "seed=0,1"], tmp_path)
    try:
        workers = wait_for(lambda: len(job_processes(sweep.pid)) == 2 and job_processes(sweep.pid), "two jobs")
        sweep.kill()  # SIGKILL: the sweep gets no chance to stop its jobs itself
        sweep.wait()
        killed = time.monotonic()
        wait_for(lambda: not any(alive(pid) for pid in workers.values()), "the job processes to end", timeout=10)
        assert time.monotonic() - killed < 5
    finally:
        sweep.kill()
        for pid in job_processes(sweep.pid).values():
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # the fast test below checks the job process's command line alone
def test_job_processes_do_not_import_modules_from_the_start_directory(tmp_path: Path) -> None:
    (tmp_path / "inspect.py").write_text("raise SystemExit('the inspect.py of the directory the sweep started in')\n")
    sweep = start_sweep(["seed=0"], tmp_path)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    assert read_json(tmp_path / "sw" / "sweep.json")["counts"] == {"completed": 1, "total": 1}


def metrics_but_timing(run_dir: Path) -> dict[str, object]:
    return {key: value for key, value in read_json(run_dir / "metrics.json").items() if not key.startswith("time/")}


@pytest.mark.slow
def test_jobs_that_share_a_worker_give_the_metrics_each_gives_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = start_sweep(["hydra.launcher.n_jobs=2", "seed=0,1,2,3"], tmp_path)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    sw = tmp_path / "sw"
    assert len({read_json(sw / str(job) / "run.json")["pid"] for job in range(4)}) == 2  # each worker ran two jobs
    for seed in range(4):  # the same job alone (the local launcher, in this process)
        assert sweep_in_process([*TINY, f"seed={seed}", f"hydra.sweep.dir=alone{seed}"], tmp_path, monkeypatch) == 0
        assert same_values(metrics_but_timing(sw / str(seed)), metrics_but_timing(tmp_path / f"alone{seed}" / "0"))


@pytest.mark.slow
def test_a_job_stopped_by_sigterm_leaves_its_worker_to_run_the_next_job(tmp_path: Path) -> None:
    sweep = start_sweep(["hydra.launcher.n_jobs=1", f"{LONG},1"], tmp_path)
    try:
        wait_for(lambda: training(tmp_path / "sw" / "0"), "job 0 to train")
        worker = job_processes(sweep.pid)[0]
        os.kill(worker, signal.SIGTERM)  # a stop asked of this job alone (kill <pid>), not of the sweep
        _, err = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    sw = tmp_path / "sw"
    assert sweep.returncode == 75, err  # a job was interrupted
    jobs = read_json(sw / "sweep.json")["jobs"]
    assert [job["status"] for job in jobs] == ["interrupted", "completed"]
    assert read_json(sw / "1" / "run.json")["pid"] == worker  # the same worker went on to the next job


@pytest.mark.slow
def test_a_sigterm_to_dq_train_alone_stops_its_jobs_and_the_re_run_resumes(tmp_path: Path) -> None:
    """A scheduler signals dq-train's pid, not its group: the parent passes the stop on to
    the job running in a worker (interrupted, last.pt written), starts no further job, exits
    75; the same command again resumes job 0 and runs job 1."""
    stay = ["hydra.launcher.n_jobs=1", "trainer.early_stopping.enabled=false", "trainer.epochs=400,1"]
    sweep = start_sweep(stay, tmp_path)
    try:
        wait_for(lambda: (tmp_path / "sw" / "0" / "checkpoints" / "last.pt").exists(), "job 0's first checkpoint")
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    sw = tmp_path / "sw"
    assert sweep.returncode == 75, err
    assert [job["status"] for job in read_json(sw / "sweep.json")["jobs"]] == ["interrupted", "not_started"]
    assert read_json(sw / "0" / "run.json")["stopped_at"]["signal"] == "SIGTERM"
    again = start_sweep(stay, tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "1 resumed" in out
    assert [job["status"] for job in read_json(sw / "sweep.json")["jobs"]] == ["completed", "completed"]


def test_a_batch_gets_the_last_batchs_workers_only_when_it_is_of_the_same_sweep() -> None:
    kept = processes._pool_for(2, b"sweep A")
    processes._keep(kept)
    assert processes._pool_for(2, b"sweep A") is kept  # the next batch of the same sweep
    processes._keep(kept)
    assert processes._pool_for(2, b"sweep B") is not kept  # another sweep: new workers
    processes._keep(kept)
    assert processes._pool_for(1, b"sweep A") is not kept  # another share of the cores
    processes._keep(kept)
    processes.close_workers()
    assert processes._pool_for(2, b"sweep A") is not kept  # the sweep ended: nothing kept


BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA = "hydra_plugins.dq_optuna_sweeper.sweeper.DQOptunaSweeper"


@pytest.mark.parametrize(
    ("sweeper", "task", "size"),
    [
        ({"_target_": BASIC, "max_batch_size": None, "params": None}, ["seed=0,1,2", "model=mlp,cnn", "a=b"], 6),
        ({"_target_": BASIC, "max_batch_size": 4, "params": None}, ["seed=range(0,10)"], 4),
        ({"_target_": BASIC, "max_batch_size": None, "params": {"seed": "0,1"}}, ["model=mlp,cnn"], 4),
        ({"_target_": BASIC, "max_batch_size": None, "params": None}, ["seed=0"], 1),
        ({"_target_": OPTUNA, "n_jobs": 4, "n_trials": 64}, [], 4),
        ({"_target_": OPTUNA, "n_jobs": 4, "n_trials": 2}, [], 2),
        ({"_target_": BASIC, "max_batch_size": None, "params": None}, ["seed=0,,"], None),  # the sweeper refuses it
        ({"_target_": "some.OtherSweeper"}, ["seed=0,1"], None),  # unknown: no worker starts early
    ],
)
def test_the_first_batch_is_sized_as_its_sweeper_splits_it(sweeper: dict, task: list[str], size: int | None) -> None:
    config = OmegaConf.create({"hydra": {"sweeper": sweeper, "overrides": {"task": task}}})
    assert processes.first_batch_size(config) == size


def test_the_first_batch_runs_in_workers_started_before_its_configs_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 0
    assert "Launching 3 jobs in 2 worker processes (2 started early)" in capsys.readouterr().out
    assert not processes._early  # used, none left over
    assert [job["status"] for job in read_json(tmp_path / "sw" / "sweep.json")["jobs"]] == ["completed"] * 3
    # A sweeper whose batches dq cannot know (here the basic launcher's, which starts none).
    assert sweep_in_process([*TINY, "seed=0,1", "hydra.sweep.dir=sw2"], tmp_path, monkeypatch) == 0
    assert "started early" not in capsys.readouterr().out


def test_workers_started_early_and_never_used_end_with_the_next_sweep_or_at_its_end() -> None:
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"_target_": BASIC, "max_batch_size": None, "params": None},
                "overrides": {"task": ["seed=0,1"]},
            }
        }
    )
    processes.start_early(config, n_jobs=2)
    first = [worker.process for _, worker in processes._early]
    try:
        assert len(first) == 2 and all(process.poll() is None for process in first)
        processes.start_early(config, n_jobs=1)  # the next sweep of this process (the first stopped early)
        assert all(process.poll() is not None for process in first)
        assert len(processes._early) == 1
        processes.close_workers()
        assert not processes._early
    finally:
        processes.close_workers()


def test_a_job_process_never_imports_from_its_working_directory(tmp_path: Path) -> None:
    # The worker's own start (cloudpickle imports inspect) with a trap in its directory; no
    # parent on its standard input, so it ends as a worker without jobs does.
    (tmp_path / "inspect.py").write_text("raise SystemExit(3)\n")
    command = worker_command(0)
    done = subprocess.run(command, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")  # not stopped by the trap (3)


def test_a_process_that_dies_with_its_parent_ends_within_seconds(tmp_path: Path) -> None:
    # sh starts a Python that asks to die with sh (as each job process does), and says its pid.
    child = "import sys, time; from dq.sweep.worker import die_with_parent; die_with_parent(int(sys.argv[1])); print(flush=True); time.sleep(120)"
    parent = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "{child}" $$ & echo $!; wait'], stdout=subprocess.PIPE, text=True
    )
    pid = int(parent.stdout.readline())
    try:
        parent.stdout.readline()  # the child's empty line: its request is in place
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(pid), "the child to end", timeout=5)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_the_slurm_preset_asks_for_no_gpu_and_requeues_on_time_limits(tmp_path: Path) -> None:
    slurm = launcher_config("slurm").launcher
    script = _make_sbatch_string(
        command="dq",
        folder=tmp_path,
        gpus_per_node=slurm.gpus_per_node,
        cpus_per_task=slurm.cpus_per_task,
        mem=f"{slurm.mem_gb}GB",
        time=slurm.timeout_min,
        signal_delay_s=slurm.signal_delay_s,
    )  # submitit's own sbatch script from the preset's values, as hydra-submitit-launcher passes them
    assert not [line for line in script.splitlines() if "gpu" in line or "gres" in line]
    assert "#SBATCH --time=240" in script and "#SBATCH --cpus-per-task=4" in script
    assert slurm.max_num_timeout > 0


def test_a_launcher_that_cannot_submit_fails_the_sweep_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch: not a SLURM cluster
    code = sweep_in_process(
        ["dataset=adult", "launcher=slurm", "seed=0,1", "hydra.sweep.dir=sw"], tmp_path, monkeypatch
    )
    sweep_json = tmp_path / "sw" / "sweep.json"
    reason = 'RuntimeError: Could not detect "srun", are you indeed on a slurm cluster?'
    assert code == 1
    assert capsys.readouterr().err == f"dq-train: error: sweep failed: {reason} ({sweep_json})\n"
    sweep = read_json(sweep_json)
    assert (sweep["status"], sweep["error"], sweep["counts"]) == ("failed", reason, {"not_started": 2, "total": 2})
    assert [row["status"] for row in job_rows(tmp_path / "sw")] == ["not_started", "not_started"]


def test_a_launcher_without_multirun_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    for launcher in ("joblib", "slurm"):
        monkeypatch.setattr(sys, "argv", ["dq-train", "+experiment=fair_adult", *TINY, f"launcher={launcher}"])
        with pytest.raises(SystemExit) as stop:
            train_main()
        assert stop.value.code == 2
        assert capsys.readouterr().err == (
            f"dq-train: error: launcher={launcher} runs a sweep's jobs: add -m (dq-train -m ... launcher={launcher})\n"
        )
    assert not list(tmp_path.rglob("*.yaml"))  # no run directory left behind


def test_no_jobs_at_once_is_refused_before_any_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*TINY, "launcher=joblib", "hydra.launcher.n_jobs=0", "seed=0,1", "hydra.sweep.dir=sw"]
    assert sweep_in_process(args, tmp_path, monkeypatch) == 2
    assert capsys.readouterr().err == (
        "dq-train: error: hydra.launcher.n_jobs must be a number of jobs at once (1, 2, ...) or -1 for one per "
        "CPU core (-2 all cores but one), got 0\n"
    )
    assert not (tmp_path / "sw").exists()
