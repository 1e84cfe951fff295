"""Convolutional classifier: Conv2d blocks on images, Conv1d blocks on series.

Both share one shape: conv blocks (conv → optional BatchNorm → ReLU → MaxPool(2) while
the spatial size is at least 2), flatten, a hidden Linear, dropout, the classifier.
Pooling stops at size 1 instead of failing, so the same config fits 8×8 digits,
28×28 MNIST and 32×32 CIFAR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from dq.config.validation import require
from dq.models.layers import Normalize, require_shape
from dq.models.registry import register
from dq.records import DatasetMeta


@dataclass
class CNNConfig:
    """Convolutional network: 2-d on images, 1-d on series."""

    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    hidden: int = 128
    dropout: float = 0.25
    batch_norm: bool = True

    def validate(self) -> None:
        require(
            len(self.channels) > 0 and all(c > 0 for c in self.channels),
            "channels",
            f"must be positive, got {list(self.channels)}",
        )
        require(
            self.kernel_size > 0 and self.kernel_size % 2 == 1,
            "kernel_size",
            f"must be a positive odd integer, got {self.kernel_size}",
        )
        require(self.hidden > 0, "hidden", f"must be > 0, got {self.hidden}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}


def conv_blocks(cfg: CNNConfig, in_channels: int, size: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """The conv stack for inputs ``[N, in_channels, *size]`` (1 or 2 spatial dims).

    Returns the stack and the number of features it outputs once flattened.
    """
    dims = len(size)
    blocks: list[nn.Module] = []
    channels = in_channels
    for out_channels in cfg.channels:
        # Same padding keeps the size; a bias is redundant right before BatchNorm.
        blocks.append(
            _CONV[dims](channels, out_channels, cfg.kernel_size, padding=cfg.kernel_size // 2, bias=not cfg.batch_norm)
        )
        if cfg.batch_norm:
            blocks.append(_NORM[dims](out_channels))
        blocks.append(nn.ReLU())
        if min(size) >= 2:
            blocks.append(_POOL[dims](2))
            size = tuple(s // 2 for s in size)
        channels = out_channels
    return nn.Sequential(*blocks), channels * math.prod(size)


class CNN(nn.Module):
    """``normalize → features (conv blocks) → hidden (Flatten, Linear, ReLU, Dropout) → head``.

    ``head`` is the classifier, a plain ``nn.Linear``, as in every dq model.
    """

    def __init__(self, cfg: CNNConfig, meta: DatasetMeta, normalize: Normalize | None) -> None:
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        self.features, width = conv_blocks(cfg, meta.input_shape[0], tuple(meta.input_shape[1:]))
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.head = nn.Linear(cfg.hidden, meta.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.features(self.normalize(x))))


@register("cnn", "image", schema=CNNConfig)
def build_image_cnn(cfg: CNNConfig, meta: DatasetMeta) -> CNN:
    """2-d CNN on ``[N, C, H, W]`` pixels, normalised inside with the dataset statistics."""
    require_shape(meta, 3, "[C, H, W]")
    return CNN(cfg, meta, Normalize.from_meta(meta))


@register("cnn", "series")
def build_series_cnn(cfg: CNNConfig, meta: DatasetMeta) -> CNN:
    """1-d CNN on ``[N, C, T]`` series (already standardised by the dataset)."""
    require_shape(meta, 2, "[C, T]")
    return CNN(cfg, meta, normalize=None)
