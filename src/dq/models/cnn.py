"""Convolutional classifier: Conv2d blocks on images, Conv1d blocks on series, Kim's
n-gram filters on text.

Images and series share one shape: conv blocks (conv → optional BatchNorm → ReLU →
MaxPool(2) while the spatial size is at least 2), flatten, a hidden Linear, dropout, the
classifier. Pooling stops at size 1 instead of failing, so the same config fits 8×8
digits, 28×28 MNIST and 32×32 CIFAR. Text has its own shape (``TokenCNN``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.layers import Normalize, require_shape, require_vocab
from dq.models.registry import PRUNE_ALL, PRUNE_GLOBAL, Capabilities, register


@dataclass
class CNNConfig:
    """Convolutional network: 2-d on images, 1-d on series; on text, Kim (2014) n-gram
    filters with max-over-time pooling (``embedding_dim``, ``filter_widths``, ``filters``:
    text only; ``channels``, ``kernel_size``, ``hidden``, ``batch_norm``: not on text)."""

    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    hidden: int = 128
    dropout: float = 0.25
    batch_norm: bool = True
    embedding_dim: int = 64
    filter_widths: list[int] = field(default_factory=lambda: [3, 4, 5])
    filters: int = 100

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
        require(self.embedding_dim > 0, "embedding_dim", f"must be > 0, got {self.embedding_dim}")
        require(
            len(self.filter_widths) > 0 and all(w > 0 for w in self.filter_widths),
            "filter_widths",
            f"must be a non-empty list of positive widths, got {list(self.filter_widths)}",
        )
        require(self.filters > 0, "filters", f"must be > 0, got {self.filters}")


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


class NgramMaxPool(nn.Module):
    """One filter width of Kim's CNN: ``Conv1d (width w) → ReLU → max over time``.

    The convolution is wide (``w − 1`` zeros on both sides, as Kim's own code pads each
    sentence), so a text shorter than ``w`` still has windows. A window that covers no
    real token is padding and is left out of the max: its ReLU output is zeroed, which
    cannot beat the max of the others (they are ≥ 0), and a text without any token pools
    to 0. The max is an ``nn.MaxPool1d`` whose window is set to the length at each call,
    so captum's DeepLift applies its max-pooling rule to it.
    """

    def __init__(self, embedding_dim: int, filters: int, width: int) -> None:
        super().__init__()
        self.width = width
        self.conv = nn.Conv1d(embedding_dim, filters, width, padding=width - 1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(1)

    def forward(self, embedded: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``embedded`` ``[N, D, L]``, ``keep`` ``[N, 1, L]`` (1 at tokens) → ``[N, filters]``."""
        w = self.width
        # Output position t sees tokens t − w + 1 … t: it counts if one of them is real.
        covers_token = F.max_pool1d(F.pad(keep, (w - 1, w - 1)), w, stride=1)
        features = self.relu(self.conv(embedded)) * covers_token
        self.pool.kernel_size = self.pool.stride = features.shape[-1]
        return self.pool(features).squeeze(-1)


class TokenCNN(nn.Module):
    """Kim (2014, arXiv:1408.5882) on token ids ``[N, L]`` right-padded with ``pad_index``:
    ``embedding → one NgramMaxPool per filter width → concat → dropout → head``.

    ``embedding`` is public for captum's layer methods; its output is zeroed at pad
    positions (by the ids), so an explainer's substitute there never enters the filters.
    """

    def __init__(self, cfg: CNNConfig, vocab_size: int, pad_index: int, num_classes: int) -> None:
        super().__init__()
        self.pad_index = pad_index
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_index)
        self.ngrams = nn.ModuleList(NgramMaxPool(cfg.embedding_dim, cfg.filters, w) for w in cfg.filter_widths)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.filters * len(cfg.filter_widths), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(x)
        keep = (x != self.pad_index).unsqueeze(1).to(embedded.dtype)
        embedded = embedded.transpose(1, 2) * keep
        pooled = torch.cat([ngram(embedded, keep) for ngram in self.ngrams], dim=1)
        return self.head(self.dropout(pooled))


@register("cnn", "image", schema=CNNConfig, capabilities=Capabilities(prune=PRUNE_ALL, channels_last=True))
def build_image_cnn(cfg: CNNConfig, meta: DatasetMeta) -> CNN:
    """2-d CNN on ``[N, C, H, W]`` pixels, normalised inside with the dataset statistics."""
    require_shape(meta, 3, "[C, H, W]")
    return CNN(cfg, meta, Normalize.from_meta(meta))


@register("cnn", "series", capabilities=Capabilities(prune=PRUNE_ALL))
def build_series_cnn(cfg: CNNConfig, meta: DatasetMeta) -> CNN:
    """1-d CNN on ``[N, C, T]`` series (already standardised by the dataset)."""
    require_shape(meta, 2, "[C, T]")
    return CNN(cfg, meta, normalize=None)


@register("cnn", "text", capabilities=Capabilities(prune=PRUNE_GLOBAL))
def build_token_cnn(cfg: CNNConfig, meta: DatasetMeta) -> TokenCNN:
    """Kim's CNN on token ids ``[N, L]`` right-padded with ``meta.pad_index``."""
    require_shape(meta, 1, "[L]")
    return TokenCNN(cfg, require_vocab(meta), meta.pad_index, meta.num_classes)
