"""Every dataset × every model that supports its modality × both optimizers trains for
one epoch on a few examples; its metrics are reproduced from the saved weights (see
run_checks) and its integrated-gradients infidelity by captum called directly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import dq
from dq import data, models
from dq.data import images
from dq.data.registry import dataset_config
from dq.data_records import Splits
from dq.errors import DQUserError
from dq.spec import to_spec
from run_checks import check_run, integrated_gradients_infidelity

MODALITY = {
    "digits": "image",
    "mnist5k": "image",
    "mnist": "image",
    "fashion_mnist": "image",
    "decoy_mnist": "image",
    "decoy_fashion_mnist": "image",
    "colored_mnist": "image",
    "adult": "tabular",
    "compas": "tabular",
    "german": "tabular",
    "reviews": "text",
    "rotten_tomatoes": "text",
    "gunpoint": "series",
}
WITH_GROUPS = {"adult", "compas", "german", "reviews", "colored_mnist"}
# The standard vision models at full width take tens of seconds a case here: narrow ones.
NARROW = {
    "preact_resnet18": ["model.width=4"],
    "wide_resnet": ["model.depth=10", "model.widen_factor=1"],
    "torchvision": ["model.arch=mobilenet_v3_small"],
}
# Pairs the registry allows by modality that a model refuses for its data, in one line
# (test_a_refused_pair_is_one_line below): torchvision's stems take 1 or 3 channels.
REFUSED = {
    ("colored_mnist", "torchvision"): "model=torchvision takes 1- or 3-channel images, dataset colored_mnist has 2"
}
COMBINATIONS = [
    (dataset, model, optimizer)
    for dataset, modality in MODALITY.items()
    for model in models.models_for(modality)
    if (dataset, model) not in REFUSED
    for optimizer in ("sgd", "adam")
]


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-layout MNIST folder of real digits (from mnist5k): torchvision's own
    loader reads it, as it would read a downloaded copy."""
    root = tmp_path_factory.mktemp("torchvision")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    source = data.build(dataset_config("mnist5k"), seed=0)
    for part, split in (("train", source.train), ("t10k", source.test)):
        pixels = (split.x[:, 0] * 255).round().numpy().astype(np.uint8)
        images.write_idx(raw / f"{part}-images-idx3-ubyte", pixels)
        images.write_idx(raw / f"{part}-labels-idx1-ubyte", split.y.numpy().astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def splits_cache() -> dict[str, Splits]:
    """Each dataset's splits, built once for the whole matrix: a rebuild per case would
    add ~100 s (decoy_fashion_mnist alone takes ~5 s), and every case of a dataset
    uses the same dataset config and seed."""
    return {}


def test_the_modality_table_matches_the_data() -> None:
    for name, modality in MODALITY.items():
        if name != "mnist":
            assert data.build(dataset_config(name, limit=4), seed=0).meta.modality == modality
    assert set(MODALITY) | {"cifar10", "celeba", "waterbirds", "civil_comments"} == set(data.available())


@pytest.mark.parametrize(("dataset", "model_name"), sorted(REFUSED))
def test_a_refused_pair_is_one_line(make_cfg, tmp_path, dataset, model_name) -> None:
    cfg = make_cfg(f"dataset={dataset}", f"model={model_name}", "dataset.limit=32", *NARROW.get(model_name, []))
    with pytest.raises(DQUserError, match=f"^{re.escape(REFUSED[dataset, model_name])}$"):
        dq.train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(("dataset", "model_name", "optimizer"), COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
def test_every_supported_combination_trains(
    make_cfg, tmp_path, mnist_root, splits_cache, dataset, model_name, optimizer
) -> None:
    overrides = [f"dataset={dataset}", f"model={model_name}", f"optimizer={optimizer}", "dataset.limit=32"]
    overrides += NARROW.get(model_name, [])
    if dataset == "mnist":
        overrides.append(f"dataset.root={mnist_root}")
    cfg = make_cfg(*overrides)
    run_dir = tmp_path / "run"
    metrics = dq.train(cfg, run_dir=run_dir)
    dataset_cfg = to_spec(cfg).dataset  # text_encoder's carries its own tokenizer
    splits = splits_cache.get(repr(dataset_cfg))
    if splits is None:
        splits = splits_cache[repr(dataset_cfg)] = data.build(dataset_cfg, int(cfg.seed))
    model, splits, spec = check_run(run_dir, metrics, epochs=1, splits=splits)
    assert spec.dataset.name == dataset and spec.model.name == model_name
    assert ("test/dp_diff" in metrics) == ("test/worst_group_accuracy" in metrics) == (dataset in WITH_GROUPS)
    # The explanation step runs for every model family on every modality (on by default).
    assert metrics["explain/integrated_gradients/infidelity"] == pytest.approx(
        integrated_gradients_infidelity(run_dir, model, splits, spec), rel=1e-4
    )
    assert (run_dir / "explanations" / "saliency.png").is_file()
