"""Whole runs in-process through Hydra's compose API: the output contract, determinism,
metrics with groups, load_run, failures and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dq
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.rundir.read import read_json, read_jsonl


def without_times(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def test_run_writes_the_output_contract(make_cfg, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = dq.train(
        make_cfg("dataset=digits", "model=mlp", "trainer.epochs=2", "dataset.limit=200"), run_dir=run_dir
    )

    info = read_json(run_dir / "run.json")
    assert info["status"] == "completed" and info["end"] is not None and info["error"] is None
    assert info["seed"] == 0 and info["device"]["type"] == "cpu"
    assert (
        info["packages"]["torch"] == torch.__version__.split("+")[0] or info["packages"]["torch"] == torch.__version__
    )
    assert set(info["git"]) == {"commit", "dirty"}

    epochs = read_jsonl(run_dir / "metrics.jsonl")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for key in ("lr", "train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/ece", "time/epoch_s"):
        assert all(key in e for e in epochs), key

    on_disk = read_json(run_dir / "metrics.json")
    assert on_disk == pytest.approx(metrics)
    for key in (
        "test/accuracy",
        "test/loss",
        "test/ece",
        "params/total",
        "params/trainable",
        "time/train_s",
        "time/eval_s",
    ):
        assert key in on_disk
    assert on_disk["params/trainable_fraction"] == 1.0
    assert 0.5 < on_disk["test/accuracy"] <= 1.0  # 200 digits, two epochs: well above chance (0.1)

    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {"epoch", "model", "optimizer", "scheduler", "scaler", "early_stopping", "rng"} <= set(last)
    assert last["epoch"] == 2
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == on_disk["train/selected_epoch"] == on_disk["train/best_epoch"]
    assert best["monitor"] == "val/accuracy"
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(make_cfg, tmp_path: Path) -> None:
    overrides = ("dataset=digits", "model=cnn", "dataset.limit=128", "seed=3")
    first = dq.train(make_cfg(*overrides), run_dir=tmp_path / "a")
    second = dq.train(make_cfg(*overrides), run_dir=tmp_path / "b")
    assert without_times(first) == without_times(second)
    other = dq.train(make_cfg(*overrides[:-1], "seed=4"), run_dir=tmp_path / "c")
    assert without_times(other) != without_times(first)


def test_tabular_run_reports_fairness_metrics_per_group(make_cfg, tmp_path: Path) -> None:
    metrics = dq.train(make_cfg("dataset=adult", "model=mlp", "dataset.limit=300"), run_dir=tmp_path / "run")
    group_keys = sorted(k for k in metrics if k.startswith("test/group_accuracy/"))
    assert len(group_keys) == 2
    # The gaps recomputed from the reloaded model's predictions with fairlearn directly.
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    run = dq.load_run(tmp_path / "run")
    test = run.splits.test
    with torch.no_grad():
        pred = run.model(test.x).argmax(dim=1).numpy()
    y, group = test.y.numpy(), test.group.numpy()
    assert metrics["test/dp_diff"] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=group))
    assert metrics["test/eo_diff"] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=group))
    assert "val/dp_diff" in read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]


def test_load_run_returns_the_best_model_and_the_same_splits(make_cfg, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    metrics = dq.train(make_cfg("dataset=digits", "model=mlp", "trainer.epochs=2"), run_dir=run_dir)
    run = dq.load_run(run_dir)
    assert not run.model.training
    assert run.spec.dataset.name == "digits" and run.metrics == pytest.approx(metrics)
    logits = predict_logits(run.model, run.splits.test, torch.device("cpu"))
    accuracy = float((logits.argmax(1) == run.splits.test.y).float().mean())
    assert accuracy == pytest.approx(metrics["test/accuracy"])


def test_load_run_refuses_a_directory_that_is_not_a_completed_run(tmp_path: Path) -> None:
    with pytest.raises(DQUserError, match="not a dq run directory"):
        dq.load_run(tmp_path)


def test_schedulers_change_the_learning_rate_per_epoch(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=digits",
        "model=mlp",
        "trainer.epochs=3",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=0.5",
        "trainer.early_stopping.enabled=false",
    )
    dq.train(cfg, run_dir=tmp_path / "step")
    lrs = [e["lr"] for e in read_jsonl(tmp_path / "step" / "metrics.jsonl")]
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4])
    cfg = make_cfg("dataset=digits", "model=mlp", "trainer.epochs=3", "scheduler=cosine", "optimizer=sgd")
    dq.train(cfg, run_dir=tmp_path / "cosine")
    lrs = [e["lr"] for e in read_jsonl(tmp_path / "cosine" / "metrics.jsonl")]
    assert lrs[0] == pytest.approx(0.05) and lrs[0] > lrs[1] > lrs[2] > 0
    # One cycle over 5 epochs, peak at 2/5: the triangle read at each epoch's midpoint.
    cfg = make_cfg(
        "dataset=digits", "model=mlp", "trainer.epochs=5", "scheduler=cyclic", "scheduler.peak=0.4", "optimizer=sgd"
    )
    dq.train(cfg, run_dir=tmp_path / "cyclic")
    lrs = [e["lr"] for e in read_jsonl(tmp_path / "cyclic" / "metrics.jsonl")]
    assert lrs == pytest.approx([0.05 * f for f in (0.25, 0.75, 5 / 6, 0.5, 1 / 6)])


def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(make_cfg, tmp_path: Path) -> None:
    # Monitoring accuracy with mode=min makes every improvement of the model "worse".
    cfg = make_cfg(
        "dataset=digits",
        "model=mlp",
        "trainer.epochs=6",
        "dataset.limit=300",
        "trainer.early_stopping.mode=min",
        "trainer.early_stopping.patience=1",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    assert metrics["train/epochs_run"] == 2 and metrics["train/best_epoch"] == 1


def test_dataloader_path_and_gradient_clipping_train(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=digits",
        "model=mlp",
        "trainer.loader=dataloader",
        "trainer.grad_clip=1.0",
        "dataset.limit=200",
        "trainer.epochs=2",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    assert metrics["test/accuracy"] > 0.3


def test_a_failure_after_start_is_recorded_and_keeps_finished_files(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """Fault injection: the test-set evaluation breaks after training has finished."""

    def broken_metrics(*args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr("dq.evaluation.split_metrics", broken_metrics)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation exploded"):
        dq.train(make_cfg("dataset=digits", "model=mlp"), run_dir=run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "evaluation exploded" in info["error"]
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("optimizer.lr=-0.1",), "optimizer.lr must be > 0, got -0.1"),
        (("trainer.epochs=-1",), "trainer.epochs must be >= 1, got -1"),
        # The path comes from where the node sits, nested or in a plugin's own schema.
        (("trainer.early_stopping.patience=0",), "trainer.early_stopping.patience must be >= 1, got 0"),
        (("eval.robust.steps=0",), "eval.robust.steps must be >= 1, got 0"),
        (("regularizer=[lora]", "regularizer.lora.rank=0"), "regularizer.lora.rank must be >= 1, got 0"),
        (("model=attention", "model.heads=3"), "model.d_model (64) must be divisible by heads (3)"),
        (("dataset=reviews", "dataset.max_vocab=2"), "dataset.max_vocab must be >= 4, got 2"),
        (("dataset=adult", "model=cnn"), "model cnn does not support tabular data"),
        (("trainer.early_stopping.monitor=val/dp_diff", "dataset=digits"), "allowed: val/accuracy, val/loss, val/ece"),
        (("dataset=cifar10", "dataset.root=/nonexistent/dq-data"), "dataset cifar10: files not found under"),
        (("regularizer=[fairness]", "dataset=digits"), "regularizer fairness needs data with groups"),
    ],
)
def test_bad_input_fails_before_training_and_leaves_no_run_dir(make_cfg, tmp_path, overrides, message) -> None:
    run_dir = tmp_path / "exp" / "run"
    with pytest.raises(DQUserError) as caught:
        dq.train(make_cfg(*overrides), run_dir=run_dir)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not run_dir.exists()


def test_select_last_tests_the_last_epoch_even_when_an_earlier_one_was_better(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "dataset=digits",
        "model=mlp",
        "trainer.epochs=3",
        "dataset.limit=300",
        "trainer.select=last",
        "trainer.early_stopping.mode=min",
        "trainer.early_stopping.patience=5",
        "explain.enabled=false",
    )
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    assert metrics["train/best_epoch"] == 1  # by the (inverted) monitor
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == metrics["train/selected_epoch"] == 3
