"""The loop's parts on their own: early stopping, batching, checkpoints, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dq.engine import checkpoint
from dq.engine.batching import LoaderBatches, TensorBatches
from dq.engine.early_stopping import EarlyStopping
from dq.outputs import atomic_write, discard_unstarted, write_json
from dq.records import Split


def test_early_stopping_tracks_best_and_stops_after_patience() -> None:
    stopper = EarlyStopping("val/accuracy", mode="max", patience=2)
    assert stopper.update(1, 0.5) and stopper.best_epoch == 1
    assert stopper.update(2, 0.6)
    assert not stopper.update(3, 0.6)  # equal is not better
    assert not stopper.should_stop
    assert not stopper.update(4, float("nan"))
    assert stopper.should_stop and stopper.best == 0.6 and stopper.best_epoch == 2
    disabled = EarlyStopping("val/loss", mode="min", patience=1, enabled=False)
    disabled.update(1, 1.0)
    disabled.update(2, 2.0)
    assert not disabled.should_stop and disabled.best == 1.0


def test_tensor_batches_cover_every_example_once_in_seeded_order() -> None:
    split = Split(x=torch.arange(10).float().unsqueeze(1), y=torch.arange(10))
    first = [b.y.tolist() for b in TensorBatches(split, 4, torch.device("cpu"), torch.Generator().manual_seed(3))]
    again = [b.y.tolist() for b in TensorBatches(split, 4, torch.device("cpu"), torch.Generator().manual_seed(3))]
    assert first == again
    assert [len(b) for b in first] == [4, 4, 2]
    order = [i for batch in first for i in batch]
    assert sorted(order) == list(range(10))
    assert order != list(range(10))  # shuffled


def test_loader_batches_carry_the_same_fields() -> None:
    split = Split(x=torch.randn(6, 3), y=torch.arange(6), group=torch.tensor([0, 1, 0, 1, 0, 1]))
    batches = list(LoaderBatches(split, 4, torch.device("cpu"), torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 2]
    for batch in batches:
        assert torch.equal(batch.group, split.group[batch.y])
        assert batch.mask is None


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(11)
    state = checkpoint.rng_state(generator)
    checkpoint.save_last(tmp_path, {"epoch": 1, "rng": state})
    expected = (torch.rand(3), torch.randperm(5, generator=generator))
    loaded = checkpoint.load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    checkpoint.restore_rng_state(loaded["rng"], generator)
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.randperm(5, generator=generator), expected[1])


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_discard_unstarted_removes_only_directories_without_results(tmp_path: Path) -> None:
    empty = tmp_path / "exp" / "run1"
    (empty / ".hydra").mkdir(parents=True)
    (empty / "cli.log").write_text("")
    discard_unstarted(empty)
    assert not empty.exists() and not (tmp_path / "exp").exists()
    kept = tmp_path / "run2"
    (kept / ".hydra").mkdir(parents=True)
    (kept / "metrics.jsonl").write_text("{}\n")
    discard_unstarted(kept)
    assert (kept / "metrics.jsonl").exists()


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    write_json(tmp_path / "run.json", {"status": "completed"})
    mode = (tmp_path / "run.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_fit_without_checkpoints_still_logs_epochs_into_a_new_run_dir(tmp_path: Path) -> None:
    from dq import data, models
    from dq.config.trainer import TrainerConfig
    from dq.data.registry import dataset_config
    from dq.engine.loop import fit
    from dq.models.mlp import MLPConfig
    from dq.objectives.base import Objective
    from dq.outputs import read_jsonl

    splits = data.build(dataset_config("digits", limit=64), seed=0)
    model = models.build(MLPConfig(hidden=[16]), splits.meta)
    trainer = TrainerConfig(epochs=2, checkpoints=False, progress=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run_dir = tmp_path / "new" / "run"
    result = fit(model, Objective(), splits, trainer, optimizer, None, torch.device("cpu"), 0, run_dir)
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    assert not (run_dir / "checkpoints").exists() and result.best_state is not None
