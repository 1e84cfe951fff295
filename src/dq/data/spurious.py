"""Spurious-feature datasets: a label and a colour that agree in training and not at test.

``colored_mnist`` (offline, from ``mnist5k``): the label is binary, digit 0-4 (class
``0-4``) or 5-9 (class ``5-9``), and each digit is drawn in red or green: a two-channel image, the digit in channel 0 (red)
or 1 (green) and the other channel black (as Arjovsky et al.'s Colored MNIST; a third,
always black channel would have no spread to normalise by; explanation pictures show the
two channels' mean, grey). In the train split the colour
agrees with the label, red for 0-4 and green for 5-9, in ``AGREEMENT`` = 95% of the
examples; in val and test it is a fair coin, independent of the label. A model can reach
95% training accuracy from the colour alone and then fails on the test split's examples
whose colour disagrees, which is what Group DRO (Sagawa et al. 2020) is for.

The groups are the (label, colour) pairs, g = 2·y + colour: ``0-4_red`` and ``5-9_green``
are the two majority groups of the train split (about 47.5% each), ``0-4_green`` and
``5-9_red`` the two minority groups (about 2.5% each). Val follows the test distribution,
not the train one, as Sagawa et al.'s Waterbirds validation set does: its four groups are
equally frequent, so ``val/worst_group_accuracy`` (model selection, early stopping)
estimates the test split's worst group instead of rewarding the shortcut. The training
split's group sizes n_g are ``meta.train_group_counts`` (filled by ``dq.data.build`` for
every dataset with groups).

Everything is drawn from the split seed (one NumPy stream per split), so the same config
and seed give bitwise identical tensors. ``meta.input_mean`` / ``input_std`` are those of
the coloured train split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from dq.data.decoy import pixel_stats
from dq.data.images import ImageDatasetConfig
from dq.data.registry import DatasetConfig, get, register
from dq.data_records import Split, Splits

AGREEMENT = 0.95  # share of training examples whose colour agrees with their label
CLASS_NAMES = ("0-4", "5-9")
COLOURS = ("red", "green")  # colour c draws the digit into channel c
GROUP_NAMES = tuple(f"{label}_{colour}" for label in CLASS_NAMES for colour in COLOURS)  # g = 2·y + c

# One NumPy stream per split (0 and 1 are the split indices', dq.data.splitting; 10-12 decoy's).
_STREAMS = {"train": 20, "val": 21, "test": 22}


def colour(split: Split, agreement: float | None, rng: np.random.RandomState) -> Split:
    """``split`` (grey digits [N, 1, H, W], labels 0-9) as two-channel digits [N, 2, H, W] with the binary label
    and the (label, colour) group. ``agreement``: the probability that an example's colour
    is its label's (red for 0-4, green for 5-9); None draws the colour independently of the
    label (a fair coin)."""
    y = (split.y >= 5).long()
    if agreement is None:
        c = torch.from_numpy(rng.randint(0, 2, size=len(y)))
    else:
        flip = torch.from_numpy(rng.random_sample(len(y)) >= agreement)
        c = torch.where(flip, 1 - y, y)
    c = c.long()
    n, _, height, width = split.x.shape
    x = split.x.new_zeros(n, len(COLOURS), height, width)
    x[torch.arange(n), c] = split.x[:, 0]
    return replace(split, x=x, y=y, group=2 * y + c)


@dataclass
class SpuriousDatasetConfig(DatasetConfig):
    """The common options only: the groups are the dataset's own (so no ``group``), and the
    source is packaged (no ``root``)."""


def colored_mnist(cfg: SpuriousDatasetConfig, seed: int) -> Splits:
    """mnist5k's splits, coloured; see the module docstring."""
    fractions = {"val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction}
    source = get("mnist5k").value(ImageDatasetConfig(name="mnist5k", **fractions), seed)

    def stream(part: str) -> np.random.RandomState:
        return np.random.RandomState([seed % 2**32, _STREAMS[part]])

    train = colour(source.train, AGREEMENT, stream("train"))
    mean, std = pixel_stats(train.x)
    meta = replace(
        source.meta,
        name="colored_mnist",
        input_shape=tuple(train.x.shape[1:]),
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        group_names=GROUP_NAMES,
        input_mean=mean,
        input_std=std,
    )
    return Splits(
        train=train,
        val=colour(source.val, None, stream("val")),
        test=colour(source.test, None, stream("test")),
        meta=meta,
    )


@register("colored_mnist", schema=SpuriousDatasetConfig)
def build_colored_mnist(cfg: SpuriousDatasetConfig, seed: int) -> Splits:
    return colored_mnist(cfg, seed)
