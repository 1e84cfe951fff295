"""LoRA through whole runs: pretrain, adapt from the finished run, reload the adapted run."""

from __future__ import annotations

import pytest
import torch

import dq
from dq.inference import predict_logits


def test_adapt_a_pretrained_run_then_load_it_back(make_cfg, tmp_path) -> None:
    base_dir = tmp_path / "pretrain"
    dq.train(make_cfg("dataset=digits", "model=cnn", "dataset.limit=200", "explain.enabled=false"), run_dir=base_dir)
    adapted_dir = tmp_path / "adapt"
    metrics = dq.train(
        make_cfg(
            "dataset=digits",
            "model=cnn",
            "dataset.limit=200",
            "explain.enabled=false",
            "regularizer=[lora]",
            f"regularizer.lora.init_from={base_dir}",
            "regularizer.lora.rank=2",
        ),
        run_dir=adapted_dir,
    )
    assert 0 < metrics["params/trainable_fraction"] < 0.2
    assert metrics["params/trainable"] < metrics["params/total"]

    base = torch.load(base_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    adapted = torch.load(adapted_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    frozen = [k for k in base if k.startswith("features.") and k.endswith("weight") and "running" not in k]
    assert frozen
    for key in frozen:  # the wrapped base weights are bitwise those of the pretrained run
        wrapped = key.replace(".weight", ".base.weight")
        assert torch.equal(adapted.get(wrapped, adapted.get(key)), base[key]), key

    run = dq.load_run(adapted_dir)
    logits = predict_logits(run.model, run.splits.test, torch.device("cpu"))
    assert float((logits.argmax(1) == run.splits.test.y).float().mean()) == pytest.approx(metrics["test/accuracy"])


def test_merged_adapters_evaluate_like_the_adapted_model(make_cfg, tmp_path) -> None:
    common = ("dataset=digits", "model=mlp", "dataset.limit=200", "explain.enabled=false", "regularizer=[lora]")
    adapted = dq.train(make_cfg(*common), run_dir=tmp_path / "a")
    merged = dq.train(make_cfg(*common, "regularizer.lora.merge=true"), run_dir=tmp_path / "m")
    assert merged["test/accuracy"] == pytest.approx(adapted["test/accuracy"])
    assert merged["test/loss"] == pytest.approx(adapted["test/loss"], abs=1e-5)
    run = dq.load_run(tmp_path / "m")
    assert not any("LoRA" in type(module).__name__ for module in run.model.modules())
