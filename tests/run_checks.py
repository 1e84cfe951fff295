"""Checks of a finished run that a wrong implementation breaks, shared by the run tests.

A tiny run (one epoch, a few examples) learns little, so "accuracy is in [0, 1]" says
nothing. What a tiny run still pins down exactly: the metrics returned are the ones on
disk; the weights in checkpoints/best.pt, reloaded, reproduce test/accuracy and test/loss
computed here from scratch (whole split in one forward pass, float64 cross-entropy);
accuracy is a count of correct predictions over the test size; metrics.jsonl has one line
per epoch; the parameter counts are the model's; and the integrated-gradients infidelity
equals captum.metrics.infidelity called here on the same examples with the same noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerIntegratedGradients
from captum.metrics import infidelity
from omegaconf import OmegaConf
from torch import nn

import dq
from dq import models
from dq.data_records import Splits
from dq.engine.checkpoint import load_best_into
from dq.rundir.read import read_json, read_jsonl
from dq.spec import RunSpec, to_spec

# Mirrors dq.explain.quality: std of the noise relative to the training inputs' std, draws per example.
INFIDELITY_NOISE = 0.1
INFIDELITY_SAMPLES = 16


def same_values(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal keys and equal values, NaN equal to NaN (a metric with nothing to average is NaN)."""
    if set(a) != set(b):
        return False
    both_nan = lambda x, y: isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)  # noqa: E731
    return all(a[k] == b[k] or both_nan(a[k], b[k]) for k in a)


def reload_model(run_dir: Path, spec: RunSpec, splits: Splits) -> nn.Module:
    """The run's model with best.pt loaded, built on ``splits`` already in hand (what
    ``dq.load_run`` does, without building the data again)."""
    model = models.build(spec.model, splits.meta)
    load_best_into(model, run_dir)
    return model.eval()


def check_run(
    run_dir: Path, metrics: dict[str, Any], epochs: int, splits: Splits | None = None
) -> tuple[nn.Module, Splits, RunSpec]:
    """Assert what every finished run must satisfy; return the reloaded model, the splits
    and the run spec. ``splits``: the run's data when the caller has it already (the
    model is then rebuilt from the run's config and best.pt); else ``dq.load_run``."""
    assert same_values(read_json(run_dir / "metrics.json"), metrics)
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [line["epoch"] for line in lines] == list(range(1, epochs + 1))
    assert all(math.isfinite(line["train/loss"]) for line in lines)
    assert metrics["train/epochs_run"] == epochs

    if splits is None:
        run = dq.load_run(run_dir)
        model, splits, spec = run.model, run.splits, run.spec
    else:
        spec = to_spec(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
        model = reload_model(run_dir, spec, splits)
    test = splits.test
    with torch.no_grad():
        logits = model(test.x).double()
    correct = int((logits.argmax(dim=1) == test.y).sum())
    assert metrics["test/accuracy"] == pytest.approx(correct / len(test), abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(float(F.cross_entropy(logits, test.y)), abs=1e-6)
    assert metrics["params/total"] == sum(p.numel() for p in model.parameters())
    assert metrics["params/trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, splits, spec


def integrated_gradients_infidelity(run_dir: Path, model: nn.Module, splits: Splits, spec: RunSpec) -> float:
    """captum.metrics.infidelity of the run's integrated-gradients explanation, computed
    here on the same examples with the same seeded noise (a draw of N(0, (0.1·std)²)
    subtracted from the inputs, clamped to the valid range; text: on the token embeddings).

    Image, tabular and series attributions are read from explanations/integrated_gradients.npz;
    text ones (stored summed per token) are recomputed with captum's LayerIntegratedGradients
    and checked against the stored per-token sums first."""
    saved = np.load(run_dir / "explanations" / "integrated_gradients.npz")
    n = len(saved["labels"])
    chosen = splits.test.x[:n]
    assert np.array_equal(saved["inputs"], chosen.numpy())
    target = torch.from_numpy(saved["predictions"])
    with torch.no_grad():
        assert torch.equal(model(chosen).argmax(dim=1), target)
    cfg, meta = spec.explain, splits.meta

    if meta.modality == "text":
        pad = meta.pad_index
        ig = LayerIntegratedGradients(model, model.embedding)
        attributions = ig.attribute(
            chosen,
            baselines=torch.full_like(chosen, pad),
            target=target,
            n_steps=cfg.ig_steps,
            internal_batch_size=cfg.internal_batch_size,
        ).detach()
        per_token = attributions.sum(dim=-1) * (chosen != pad)
        np.testing.assert_allclose(saved["attributions"], per_token.numpy(), rtol=1e-4, atol=1e-6)
        weight = model.embedding.weight.detach()
        scale = float(weight[torch.arange(len(weight)) != pad].std())
        with torch.no_grad():
            inputs = model.embedding(chosen)

        def forward(embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            handle = model.embedding.register_forward_hook(lambda *_: embeddings)
            try:
                return model(ids)
            finally:
                handle.remove()

        args: tuple[torch.Tensor, ...] | None = (chosen,)
        low = high = None
    else:
        attributions = torch.from_numpy(saved["attributions"])
        inputs, forward, args = chosen, model, None
        scale = float(splits.train.x.float().std()) or 1.0
        low, high = meta.valid_range if meta.valid_range is not None else (None, None)

    def perturb(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moved = x - torch.randn_like(x) * INFIDELITY_NOISE * scale
        if low is not None:
            moved = moved.clamp(low, high)
        return x - moved, moved

    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)  # the explanation step seeds each method so
        values = infidelity(
            forward,
            perturb,
            inputs,
            attributions,
            additional_forward_args=args,
            target=target,
            n_perturb_samples=INFIDELITY_SAMPLES,
            max_examples_per_batch=min(max(cfg.internal_batch_size, n), n * INFIDELITY_SAMPLES),
            normalize=True,
        )
    return float(values.mean())
