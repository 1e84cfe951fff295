"""Memory that does not grow where it need not: decoy masks stored as bool, integrated
gradients in bounded internal batches (issue 10, item 5)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dq import data, models
from dq.config.explain import ExplainConfig
from dq.data.registry import dataset_config
from dq.data_records import Split
from dq.device import seed_everything
from dq.explain.methods import Attribution, attribute, lookup
from dq.explain.quality import METRICS
from dq.explain.space import build_space
from dq.models.mlp import MLPConfig
from dq.objectives.attribution import AttributionMethod, AttributionPenalty


@pytest.fixture(scope="module")
def decoy() -> data.Splits:
    return data.build(dataset_config("decoy_mnist", limit=64), seed=0)


def test_decoy_masks_are_bool_a_quarter_of_float32(decoy) -> None:
    for split in (decoy.train, decoy.val, decoy.test):
        assert split.mask.dtype == torch.bool and split.mask.shape == split.x.shape
        assert split.mask.nbytes * 4 == split.x.nbytes  # one byte per pixel, x has four
        assert int(split.mask.sum()) == len(split) * 4 * 4  # one 4×4 swatch each


@pytest.mark.parametrize("method", list(AttributionMethod))
def test_rrr_penalty_is_the_same_with_a_bool_mask_as_with_a_float_one(decoy, method) -> None:
    """The bool mask gives the penalty the float32 mask gave before (within 1e-6)."""
    seed_everything(0)
    model = models.build(MLPConfig(name="mlp", dropout=0.0), decoy.meta).train()
    batch = decoy.train.subset(slice(0, 16))
    penalty = AttributionPenalty(weight=1.0, method=method, steps=4)
    logits = model(batch.x).detach()
    with_bool = penalty(model, batch, logits).detach()
    with_float = penalty(model, Split(batch.x, batch.y, mask=batch.mask.float()), logits).detach()
    assert float(with_bool) > 0
    assert float(with_bool) == pytest.approx(float(with_float), rel=1e-6, abs=1e-12)


def test_mask_mass_is_the_same_with_a_bool_mask_as_with_a_float_one(decoy) -> None:
    attribution = torch.randn(decoy.test.x.shape, generator=torch.Generator().manual_seed(0))
    mask_mass = METRICS["mask_mass"].compute
    with_bool = mask_mass(SimpleNamespace(mask=decoy.test.mask, per_token=attribution))["mask_mass"]
    with_float = mask_mass(SimpleNamespace(mask=decoy.test.mask.float(), per_token=attribution))["mask_mass"]
    assert 0 < with_bool < 1
    assert with_bool == pytest.approx(with_float, abs=1e-6)


def test_integrated_gradients_in_bounded_internal_batches_agree_with_one_batch() -> None:
    """``explain.internal_batch_size`` bounds how many interpolated points captum evaluates
    at once (memory grows with it, not with n_steps × examples); the attributions and the
    convergence delta are those of the unbounded call."""
    splits = data.build(dataset_config("digits", limit=64), seed=0)
    seed_everything(0)
    model = models.build(MLPConfig(name="mlp", dropout=0.0), splits.meta).eval()
    x = splits.test.x[:8]
    target = model(x).argmax(dim=1)
    method = lookup("integrated_gradients")

    def ig(internal_batch_size: int) -> Attribution:
        cfg = ExplainConfig(ig_steps=16, internal_batch_size=internal_batch_size)
        return attribute(method, build_space(model, splits.meta, x, splits.train.x, cfg), target, cfg)

    bounded, whole = ig(8), ig(8 * 16)  # 16 captum batches of 8 points against one of 128
    assert whole.values.abs().sum() > 0
    torch.testing.assert_close(bounded.values, whole.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bounded.delta, whole.delta, rtol=1e-5, atol=1e-6)
