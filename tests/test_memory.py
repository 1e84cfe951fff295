"""Memory that does not grow where it need not: decoy masks stored as bool, integrated
gradients in bounded internal batches (issue 10, item 5), statistics of a compact (uint8)
split read a chunk at a time (issue 23)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dq import data, data_records, models
from dq.config.explain import Baseline, ExplainConfig
from dq.data.registry import dataset_config
from dq.data_records import Split, Splits, float_chunks, float_inputs, input_stats
from dq.device import seed_everything
from dq.explain.methods import Attribution, attribute, lookup
from dq.explain.quality import METRICS
from dq.explain.run import explain_run
from dq.explain.space import build_space, train_stats
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
        return attribute(
            method, build_space(model, splits.meta, x, train_stats(splits.meta, splits.train.x), cfg), target, cfg
        )

    bounded, whole = ig(8), ig(8 * 16)  # 16 captum batches of 8 points against one of 128
    assert whole.values.abs().sum() > 0
    torch.testing.assert_close(bounded.values, whole.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bounded.delta, whole.delta, rtol=1e-5, atol=1e-6)


def uint8_images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_float_chunks_convert_at_most_size_examples_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks are the whole split's float inputs in order, and neither they nor
    input_stats ever hand float_inputs more than the chunk size."""
    pixels = uint8_images(10)
    chunks = list(float_chunks(pixels, 4))
    assert [c.shape[0] for c in chunks] == [4, 4, 2] and {c.dtype for c in chunks} == {torch.float32}
    assert torch.equal(torch.cat(chunks), float_inputs(pixels))
    converted: list[int] = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        converted.append(int(x.shape[0]))
        return float_inputs(x)

    monkeypatch.setattr(data_records, "float_inputs", counting)
    input_stats(pixels, 3)
    assert converted == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="chunk size must be >= 1, got 0"):
        next(float_chunks(pixels, 0))


@pytest.mark.parametrize(
    "x",
    [
        pytest.param(uint8_images(50), id="uint8-images"),
        pytest.param(torch.randn(37, 5, generator=torch.Generator().manual_seed(1)) * 3 + 100, id="float-tabular"),
    ],
)
@pytest.mark.parametrize("size", [7, 1024])
def test_input_stats_are_the_whole_split_s_mean_and_std(x: torch.Tensor, size: int) -> None:
    """Chunked statistics equal those of the whole split converted at once (what explain
    computed before), in chunks smaller than the split and in one chunk: the mean example
    and the Bessel-corrected std over every value (a float column far from 0 too, where a
    naive sum of squares would cancel)."""
    whole = float_inputs(x)
    stats = input_stats(x, size)
    assert stats.mean.dtype == torch.float32 and stats.mean.shape == (1, *x.shape[1:])
    torch.testing.assert_close(stats.mean, whole.mean(dim=0, keepdim=True), rtol=1e-6, atol=1e-6)
    assert stats.std == pytest.approx(float(whole.double().std()), rel=1e-6)
    assert stats.std == pytest.approx(float(whole.std()), rel=1e-5)


def test_explanations_of_a_compact_split_match_those_of_its_float_copy(tmp_path: Path) -> None:
    """Digits stored as uint8 (pixels k / 255) and the same pixels as float32 give the same
    mean baseline and noise scale (those of the whole training split, as before) and the
    same integrated-gradients attributions."""
    source = data.build(dataset_config("digits", limit=64), seed=0)

    def stored(split: Split, compact: bool) -> Split:
        pixels = (split.x * 255).round().to(torch.uint8)
        return Split(x=pixels if compact else pixels.float() / 255, y=split.y)

    compact, full = (
        Splits(*(stored(s, flag) for s in (source.train, source.val, source.test)), meta=source.meta)
        for flag in (True, False)
    )
    assert compact.train.x.dtype == torch.uint8
    seed_everything(0)
    model = models.build(MLPConfig(name="mlp", dropout=0.0), source.meta).eval()
    cfg = ExplainConfig(methods=["integrated_gradients"], metrics=[], n_samples=4, ig_steps=8, baseline=Baseline.mean)
    x = full.test.x[:4]
    space = build_space(model, source.meta, x, train_stats(source.meta, compact.train.x), cfg)
    torch.testing.assert_close(space.baselines, full.train.x.mean(dim=0, keepdim=True).expand_as(x))
    assert space.scale == pytest.approx(float(full.train.x.std()), rel=1e-5)
    attributions = []
    for splits, where in ((compact, tmp_path / "compact"), (full, tmp_path / "full")):
        explain_run(model, splits, splits.meta, cfg, where, "cpu", seed=0)
        with np.load(where / "explanations" / "integrated_gradients.npz") as saved:
            attributions.append(saved["attributions"])
    np.testing.assert_allclose(attributions[0], attributions[1], rtol=1e-5, atol=1e-7)
