"""One run on several processes (``trainer.devices``, torchrun): DistributedDataParallel on
gloo, shards of each epoch, rank 0 the only writer, the same run as one process.

The proof that counts: with no batch statistics and no dropout (``model.batch_norm=false
model.dropout=0``) the ranks' k-th batches together are the single-process k-th batch and
DDP averages their gradients, so a 2-process run is the 1-process run up to float32
rounding of the gradient means (measured: train loss equal to 1e-7 relative after two
epochs, test metrics identical). The tolerances below (1e-4 on losses, the same test
accuracy to one example) leave room for that rounding only: a rank that trained on the
whole epoch, on its half only, or with unsynchronised weights misses them by far more.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from rich.console import Console

from conftest import compose_config
from dq.config.trainer import TrainerConfig
from dq.data_records import Split
from dq.engine.batching import TensorBatches, shard_order
from dq.engine.launch import check_world
from dq.errors import DQUserError
from dq.rundir.read import read_json, read_jsonl
from dq.rundir.resume_config import config_conflict, resumed_config
from dq.runner import train

EXACT = ("dataset=digits", "model=cnn", "model.batch_norm=false", "model.dropout=0", "explain.enabled=false")
EXACT += ("dataset.limit=600", "trainer.batch_size=64")


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.mark.parametrize(("n", "world"), [(10, 2), (11, 2), (7, 3), (1, 2)])
def test_the_shards_cover_the_epoch_once(n: int, world: int) -> None:
    """Every example in some shard, at most ``world - 1`` twice (DistributedSampler's padding),
    all shards as long; the same generator state gives every rank the same permutation."""
    state = torch.Generator().manual_seed(5).get_state()
    shards = []
    for rank in range(world):
        generator = torch.Generator()
        generator.set_state(state)
        shards.append(shard_order(n, generator, rank, world).tolist())
    assert len({len(shard) for shard in shards}) == 1
    counts = Counter(index for shard in shards for index in shard)
    assert set(counts) == set(range(n))
    assert sum(counts.values()) - n == (-n) % world


def test_the_ranks_batches_together_are_the_single_process_batch() -> None:
    split = Split(x=torch.arange(20.0).view(20, 1), y=torch.arange(20))
    one = TensorBatches(split, 8, torch.device("cpu"), torch.Generator().manual_seed(1))
    ranks = [TensorBatches(split, 8, torch.device("cpu"), torch.Generator().manual_seed(1), r, 2) for r in range(2)]
    single = [sorted(batch.y.tolist()) for batch in one]
    together = [sorted(a.y.tolist() + b.y.tolist()) for a, b in zip(*ranks, strict=True)]
    assert len(ranks[0]) == len(one) == 3
    assert together == single


def test_refusals_name_what_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert check_world(TrainerConfig(devices=2), cpu, sweep=False) == 2
    with pytest.raises(DQUserError, match=r"trainer.batch_size=64 must be a multiple of the 3 processes"):
        check_world(TrainerConfig(devices=3), cpu, sweep=False)
    with pytest.raises(DQUserError, match=r"not a sweep's jobs; run a sweep's jobs side by side with launcher=joblib"):
        check_world(TrainerConfig(devices=2), cpu, sweep=True)
    if torch.cuda.device_count() < 8:
        with pytest.raises(DQUserError, match=r"trainer.devices=8 on CUDA needs 8 GPUs .*trainer.device=cpu"):
            check_world(TrainerConfig(devices=8), cuda, sweep=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert check_world(TrainerConfig(), cpu, sweep=False) == 2  # torchrun decides
    with pytest.raises(DQUserError, match=r"trainer.devices=4 but torchrun started 2 processes"):
        check_world(TrainerConfig(devices=4), cpu, sweep=False)


def test_a_resumed_run_may_change_its_process_count_and_nothing_else() -> None:
    saved = compose_config(("dataset=digits",))
    given = compose_config(("dataset=digits", "trainer.devices=2"))
    config_conflict(saved, given)
    merged = resumed_config(saved, given, ["trainer.devices=2"], saved_choices={}, group_keys=[])
    assert merged.trainer.devices == 2
    with pytest.raises(
        DQUserError, match=r"trainer.batch_size=16 conflicts with the run's saved trainer.batch_size=32"
    ):
        config_conflict(saved, compose_config(("dataset=digits", "trainer.batch_size=16")))


def files_of(run_dir: Path) -> set[str]:
    return {str(path.relative_to(run_dir)) for path in run_dir.rglob("*")}


def test_two_processes_train_the_one_process_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is rank 0 of ``trainer.devices=2`` (rank 1 is a ``python -m dq.cli`` it
    starts); the run matches one process's, and rank 0's directory is the only one written."""
    monkeypatch.chdir(tmp_path)  # anything a rank wrote into its working directory would show here
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = train(compose_config(EXACT), tmp_path / "runs" / "one", quiet())
    two = train(compose_config((*EXACT, "trainer.devices=2")), tmp_path / "runs" / "two", quiet())

    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["one", "two"]
    assert files_of(tmp_path / "runs" / "two") == files_of(tmp_path / "runs" / "one")
    assert two["test/accuracy"] == pytest.approx(one["test/accuracy"], abs=1.01 / two["test/examples"])
    assert two["test/loss"] == pytest.approx(one["test/loss"], abs=1e-4)
    [epoch_one] = read_jsonl(tmp_path / "runs" / "one" / "metrics.jsonl")
    [epoch_two] = read_jsonl(tmp_path / "runs" / "two" / "metrics.jsonl")
    for key in ("train/loss", "train/accuracy", "val/loss", "val/accuracy"):  # train/: summed over both ranks
        assert epoch_two[key] == pytest.approx(epoch_one[key], abs=1e-4), key
    assert read_json(tmp_path / "runs" / "two" / "run.json")["status"] == "completed"


@pytest.mark.slow
def test_torchrun_and_resume_on_two_processes(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=2 -m dq.cli`` writes one run directory; ``dq-train
    resume=<it> trainer.devices=2 trainer.epochs=2`` continues it to the 2-epoch run of one process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    fast = [*EXACT, "trainer.device=cpu", "trainer.progress=false", "report.html=false", "report.model_card=false"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "dq.cli", *fast]
    done = subprocess.run(
        [*torchrun, "trainer.epochs=1", "experiment_name=ddp"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [run_dir] = (tmp_path / "outputs" / "ddp").iterdir()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outputs"]

    resume = [sys.executable, "-m", "dq.cli", f"resume={run_dir}", "trainer.devices=2", "trainer.epochs=2"]
    done = subprocess.run(resume, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [path.name for path in (tmp_path / "outputs" / "ddp").iterdir()] == [run_dir.name]

    reference = train(compose_config((*EXACT, "trainer.epochs=2")), tmp_path / "one", quiet())
    resumed = read_json(run_dir / "metrics.json")
    assert resumed["train/epochs_run"] == 2
    assert resumed["test/loss"] == pytest.approx(reference["test/loss"], abs=1e-4)
    assert resumed["test/accuracy"] == pytest.approx(reference["test/accuracy"], abs=1.01 / resumed["test/examples"])
