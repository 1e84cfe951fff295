"""Faithfulness of explanations (explain.metrics=[pixel_flipping], through Quantus): on a
trained digits model, integrated gradients and occlusion remove the prediction sooner than
a random attribution of the same shape; other modalities are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dq import data, models
from dq.config.explain import ExplainConfig
from dq.data_records import DatasetMeta
from dq.device import seed_everything
from dq.errors import DQUserError
from dq.explain.faithfulness import curve_area, features_in_step, pixel_flipping, pixel_flipping_curves
from dq.explain.run import check_explain, explain_run
from dq.explain.space import build_space, train_stats
from dq.spec import to_spec


@pytest.fixture(scope="module")
def digits_mlp():
    """An MLP trained with full-batch Adam on the 8×8 digits (about a second)."""
    from conftest import compose_config

    spec = to_spec(
        compose_config(
            ["dataset=digits", "model=mlp", "model.hidden=[64]", "dataset.limit=null", "explain.enabled=false"]
        )
    )
    splits = data.build(spec.dataset, spec.seed)
    seed_everything(0)
    model = models.build(spec.model, splits.meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(splits.train.x), splits.train.y).backward()
        optimizer.step()
    return model.eval(), splits


def test_ig_and_occlusion_are_more_faithful_than_a_random_attribution(digits_mlp, tmp_path: Path) -> None:
    model, splits = digits_mlp
    cfg = ExplainConfig(methods=["integrated_gradients", "occlusion"], metrics=["pixel_flipping"], images=False)
    metrics = explain_run(model, splits, splits.meta, cfg, tmp_path, "cpu", seed=0)
    ig = metrics["explain/integrated_gradients/faithfulness_pixel_flipping"]
    occlusion = metrics["explain/occlusion/faithfulness_pixel_flipping"]

    x = splits.test.x[: cfg.n_samples]
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    space = build_space(model, splits.meta, x, train_stats(splits.meta, splits.train.x), cfg)
    random = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    chance = pixel_flipping(space, random, target)
    assert 0 <= ig < chance - 0.1 and 0 <= occlusion < chance - 0.1, (ig, occlusion, chance)

    # the curve starts at the clean probability and ends with every pixel black (all inputs 0)
    curves = pixel_flipping_curves(space, random, target)
    assert curves.shape == (cfg.n_samples, 65)
    with torch.no_grad():
        clean = torch.softmax(model(x), 1)[torch.arange(len(x)), target].numpy()
        black = torch.softmax(model(torch.zeros_like(x)), 1)[torch.arange(len(x)), target].numpy()
    np.testing.assert_allclose(curves[:, 0], clean, atol=1e-5)
    np.testing.assert_allclose(curves[:, -1], black, atol=1e-5)
    np.testing.assert_allclose(curve_area(np.ones((2, 5))), [1.0, 1.0])


def test_features_in_step_divides_the_input_into_at_most_128_steps() -> None:
    assert [features_in_step(n) for n in (64, 784, 3072, 7)] == [1, 7, 24, 1]


def test_pixel_flipping_off_images_is_refused_in_one_line() -> None:
    table = DatasetMeta(name="adult", modality="tabular", input_shape=(6,), num_classes=2, class_names=("a", "b"))
    cfg = ExplainConfig(methods=["saliency"], metrics=["sparseness", "pixel_flipping"])
    with pytest.raises(DQUserError, match=r"^explain metric pixel_flipping applies to images only .* adult is tabular"):
        check_explain(cfg, table, nn.Linear(6, 2))
