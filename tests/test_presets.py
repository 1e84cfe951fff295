"""Every preset in conf/experiment composes and runs (tiny: one epoch, a few examples)."""

from __future__ import annotations

from pathlib import Path

import pytest

import dq
from dq.config import config_dir
from dq.outputs import read_json

PRESETS = sorted(path.stem for path in (config_dir() / "experiment").glob("*.yaml"))


def test_the_issue_presets_exist() -> None:
    expected = {
        "fair_adv",
        "fair_adult",
        "adv_digits",
        "adv_fmnist",
        "trades_digits",
        "rrr_decoy",
        "lora_transfer",
        "robust_fair",
    }
    assert expected <= set(PRESETS)


@pytest.fixture(scope="module")
def pretrained_mnist_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first of lora_transfer's two commands, shrunk."""
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("pretrain") / "run"
    dq.train(compose_config(["dataset=fashion_mnist", "model=cnn", "explain.enabled=false"]), run_dir=run_dir)
    return run_dir


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs(make_cfg, tmp_path, preset, request) -> None:
    overrides = [f"+experiment={preset}", "eval.robust.limit=16", "eval.robust.steps=2"]
    if preset == "lora_transfer":
        overrides.append(f"regularizer.lora.init_from={request.getfixturevalue('pretrained_mnist_cnn')}")
    cfg = make_cfg(*overrides)
    metrics = dq.train(cfg, run_dir=tmp_path / "run")
    assert cfg.experiment_name == preset
    assert read_json(tmp_path / "run" / "run.json")["status"] == "completed"
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    for eps in cfg.eval.robust.eps:
        assert f"test/robust_accuracy@{eps:g}" in metrics
