"""The processes of one run on several processes: who starts them, how they meet, what
rank 0 tells them.

Two ways in, one mechanism:

- ``dq-train trainer.devices=N``: the Hydra process is rank 0. After it has validated the
  config and built the run, it starts N − 1 copies of ``python -m dq.cli`` with RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set, hosts their TCPStore (on a port
  the OS picked when the store bound its socket: no fixed port, no race) and watches them: a rank that dies before joining fails the run in
  one line, and none outlives rank 0 (PR_SET_PDEATHSIG on Linux).
- ``torchrun --nproc_per_node=N -m dq.cli ...``: torchrun starts every rank with that
  environment; rank 0 runs Hydra as usual.

Either way only rank 0 runs Hydra, so only rank 0 has a run directory (Hydra's time stamp
is drawn per process and would differ): it publishes the job (the resolved config, the run
directory, whether it resumes) in the store, and the other ranks read it there instead of
composing a config of their own. Then all ranks call ``init_process_group`` on that store:
gloo on CPU, NCCL on CUDA (one GPU per rank, ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dq.config.trainer import TrainerConfig
from dq.engine.ranks import Ranks
from dq.errors import DQUserError, RunFailed, RunInterrupted

TIMEOUT = timedelta(minutes=30)  # torch's default for gloo: a rank building a large dataset is not late
POLL_S = 0.1


@dataclass(frozen=True)
class Job:
    """What rank 0 tells the other ranks: the run's config (YAML, resolved), its directory
    (read for a resume, never written by them) and whether it resumes."""

    config: str
    run_dir: str
    resume: bool


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def launched_world() -> int:
    """WORLD_SIZE set by torchrun (or by rank 0 for the ranks it starts); 1 otherwise."""
    return _env_int("WORLD_SIZE", 1)


def launched_rank() -> int:
    return _env_int("RANK", 0) if launched_world() > 1 else 0


def is_worker() -> bool:
    """A rank other than 0 of a run on several processes: it takes its job from rank 0."""
    return launched_rank() > 0


def check_world(trainer: TrainerConfig, device: torch.device, *, sweep: bool) -> int:
    """How many processes train this run; refuses in one line what cannot run.

    Raises:
        DQUserError: torchrun's world differs from ``trainer.devices``; several processes in a
            sweep job; a batch size the ranks cannot share evenly; fewer GPUs than ranks.
    """
    launched, devices = launched_world(), trainer.devices
    if launched > 1 and devices not in (1, launched):
        raise DQUserError(
            f"trainer.devices={devices} but torchrun started {launched} processes (WORLD_SIZE); "
            f"leave trainer.devices at 1 under torchrun, or set it to {launched}"
        )
    world = launched if launched > 1 else devices
    if world == 1:
        return 1
    if sweep:
        raise DQUserError(
            f"trainer.devices={world} runs one job on several processes, not a sweep's jobs; "
            "run a sweep's jobs side by side with launcher=joblib instead"
        )
    if trainer.batch_size % world:
        raise DQUserError(
            f"trainer.batch_size={trainer.batch_size} must be a multiple of the {world} processes "
            f"(each takes batch_size/{world} examples of every batch)"
        )
    if device.type == "cuda":
        local = _env_int("LOCAL_WORLD_SIZE", world)
        if torch.cuda.device_count() < local:
            raise DQUserError(
                f"trainer.devices={world} on CUDA needs {local} GPUs on this machine, it has "
                f"{torch.cuda.device_count()}; use trainer.device=cpu for {world} CPU processes (gloo)"
            )
    return world


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` on CUDA (one GPU per rank), else ``device``."""
    if device.type != "cuda" or launched_world() == 1:
        return device
    index = _env_int("LOCAL_RANK", 0)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _prefix() -> str:
    return f"dq/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"  # torchrun's restarts reuse its store


LOCALHOST = "127.0.0.1"


def _store(rank: int, world: int) -> dist.TCPStore:
    """The rendezvous store of a launched run: torchrun's agent hosts it
    (TORCHELASTIC_USE_AGENT_STORE), else rank 0 at MASTER_ADDR:MASTER_PORT."""
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    hosts = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    return dist.TCPStore(host, port, world, is_master=hosts, timeout=TIMEOUT, wait_for_workers=False)


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def _join(store: dist.TCPStore, rank: int, world: int, device: torch.device) -> Ranks:
    dist.init_process_group(
        _backend(device), store=dist.PrefixStore(_prefix() + "pg", store), rank=rank, world_size=world, timeout=TIMEOUT
    )
    return Ranks(rank, world)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start_ranks(world: int, port: int) -> list[subprocess.Popen]:
    """Ranks 1..world−1 as ``python -m dq.cli`` with torchrun's environment (stdout quiet,
    stderr shared: a rank's crash is seen)."""
    children = []
    for rank in range(1, world):
        env = {**os.environ, "MASTER_ADDR": LOCALHOST, "MASTER_PORT": str(port), "WORLD_SIZE": str(world)}
        env.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "dq.cli"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        )
    return children


def _dead(children: list[subprocess.Popen]) -> str | None:
    for rank, child in enumerate(children, start=1):
        code = child.poll()
        if code is not None and code < 0:
            return f"process {rank} of {len(children) + 1} was killed by {signal.Signals(-code).name}"
        if code:
            return f"process {rank} of {len(children) + 1} exited with code {code}; its error is above"
    return None


def _wait_ready(store: dist.TCPStore, world: int, children: list[subprocess.Popen]) -> None:
    """Until every rank has built its run and said so; a rank that dies first fails the run."""
    keys = [f"{_prefix()}ready/{rank}" for rank in range(1, world)]
    deadline = time.monotonic() + TIMEOUT.total_seconds()
    while not store.check(keys):
        problem = _dead(children)
        if problem is not None:
            raise RunFailed(f"a run on {world} processes could not start: {problem}")
        if time.monotonic() > deadline:
            raise RunFailed(f"a run on {world} processes could not start: not every process joined in {TIMEOUT}")
        time.sleep(POLL_S)


def _stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
    for child in children:
        child.wait()


@contextmanager
def processes(world: int, device: torch.device, job: Job) -> Iterator[Ranks]:
    """Rank 0's side of the run on ``world`` processes (``Ranks.single()`` for one): start
    the other ranks unless torchrun did, hand them ``job``, join the group; on leaving,
    leave the group and wait for the ranks (kill them when training failed here).

    Raises:
        RunFailed: another rank died (before joining, or while training: then the
            collective's own error is its cause).
    """
    if world == 1:
        yield Ranks.single()
        return
    children: list[subprocess.Popen] = []
    try:
        if launched_world() == 1:  # dq-train trainer.devices=N: this process starts the others
            store = dist.TCPStore(LOCALHOST, 0, world, is_master=True, timeout=TIMEOUT, wait_for_workers=False)
            children = _start_ranks(world, store.port)
        else:
            store = _store(0, world)
        store.set(f"{_prefix()}job", json.dumps(asdict(job)))
        _wait_ready(store, world, children)
        ranks = _join(store, 0, world, device)
    except BaseException:
        _stop(children)
        raise
    ok = False
    try:
        yield ranks
        ok = True
    except (DQUserError, RunFailed, RunInterrupted):
        raise  # every rank stopped on it together (dq.engine.ranks); the others' exit codes say the same
    except Exception as error:  # a collective that lost a rank, or a bug here
        problem = _dead(children)
        if problem is None:
            raise
        raise RunFailed(f"the run on {world} processes failed: {problem}") from error
    finally:
        dist.destroy_process_group()
        if ok:  # they leave as soon as their last epoch is done
            for child in children:
                with suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=TIMEOUT.total_seconds())
        _stop(children)


def worker_job() -> tuple[Job, dist.TCPStore]:
    """A rank other than 0: the job rank 0 published (waits for it)."""
    store = _store(launched_rank(), launched_world())
    store.wait([f"{_prefix()}job"], TIMEOUT)
    return Job(**json.loads(store.get(f"{_prefix()}job"))), store


def worker_join(store: dist.TCPStore, device: torch.device) -> Ranks:
    """Say this rank is ready, then join the group."""
    rank, world = launched_rank(), launched_world()
    store.set(f"{_prefix()}ready/{rank}", "1")
    return _join(store, rank, world, device)
