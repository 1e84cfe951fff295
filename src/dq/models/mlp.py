"""Fully connected classifier: on flattened float inputs (image, tabular, series), and
fastText-style on the mean token embedding (text)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.layers import Activation, Normalize, activation, require_shape, require_vocab
from dq.models.registry import PRUNE_ALL, PRUNE_GLOBAL, Capabilities, register


@dataclass
class MLPConfig:
    """Fully connected network on flattened float inputs (image, tabular, series); on text,
    fastText-style on the mean of the token embeddings (``embedding_dim``: text only)."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.1
    activation: Activation = Activation.relu
    embedding_dim: int = 64

    def validate(self) -> None:
        require(all(h > 0 for h in self.hidden), "hidden", f"sizes must be > 0, got {list(self.hidden)}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.embedding_dim > 0, "embedding_dim", f"must be > 0, got {self.embedding_dim}")


def hidden_layers(cfg: MLPConfig, width: int) -> tuple[list[nn.Module], int]:
    """``Linear → activation → Dropout`` per size in ``cfg.hidden`` on ``width`` inputs, and
    the width they output."""
    layers: list[nn.Module] = []
    for size in cfg.hidden:
        layers += [nn.Linear(width, size), activation(cfg.activation), nn.Dropout(cfg.dropout)]
        width = size
    return layers, width


class MLP(nn.Module):
    """``normalize → body (Flatten, then Linear → activation → Dropout per hidden size) → head``.

    ``normalize`` is a ``Normalize`` on images (they arrive in pixel space) and the
    identity on tabular and series data (standardised by the dataset already). ``head``
    is the classifier, a plain ``nn.Linear``, as in every dq model.
    """

    def __init__(self, cfg: MLPConfig, meta: DatasetMeta, normalize: Normalize | None) -> None:
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        layers, width = hidden_layers(cfg, math.prod(meta.input_shape))
        self.body = nn.Sequential(nn.Flatten(), *layers)
        self.head = nn.Linear(width, meta.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.normalize(x)))


class TokenMLP(nn.Module):
    """fastText-style text classifier (Joulin et al. 2017, arXiv:1607.01759):
    ``embedding → mean over the non-pad tokens → body (hidden layers) → head``.

    The mean is a masked sum over ``embedding``'s per-token output ``[N, L, D]`` rather
    than an ``nn.EmbeddingBag``, so that attribution can hook that layer and score each
    token. The mask comes from the ids, so whatever stands at a pad position (the zero
    pad embedding, or an explainer's substitute) never enters the mean. The gradient of
    a mean is the same for every token of a text, so gradient-only attributions
    (saliency) cannot tell its tokens apart; input × gradient and integrated gradients can.
    """

    def __init__(self, cfg: MLPConfig, vocab_size: int, pad_index: int, num_classes: int) -> None:
        super().__init__()
        self.pad_index = pad_index
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_index)
        layers, width = hidden_layers(cfg, cfg.embedding_dim)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(x)
        keep = (x != self.pad_index).unsqueeze(-1).to(embedded.dtype)
        # An all-pad row averages nothing: its mean is the zero vector.
        mean = (embedded * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.head(self.body(mean))


@register("mlp", "image", schema=MLPConfig, capabilities=Capabilities(prune=PRUNE_ALL))
def build_image_mlp(cfg: MLPConfig, meta: DatasetMeta) -> MLP:
    """An ``MLP`` on flattened pixels, normalised inside with the dataset statistics."""
    require_shape(meta, 3, "[C, H, W]")
    return MLP(cfg, meta, Normalize.from_meta(meta))


@register("mlp", "tabular", "series", capabilities=Capabilities(prune=PRUNE_ALL))
def build_mlp(cfg: MLPConfig, meta: DatasetMeta) -> MLP:
    """An ``MLP`` on tabular columns or a flattened series (already standardised by the dataset)."""
    return MLP(cfg, meta, normalize=None)


@register("mlp", "text", capabilities=Capabilities(prune=PRUNE_GLOBAL))
def build_token_mlp(cfg: MLPConfig, meta: DatasetMeta) -> TokenMLP:
    """A ``TokenMLP`` on token ids ``[N, L]`` right-padded with ``meta.pad_index``."""
    require_shape(meta, 1, "[L]")
    return TokenMLP(cfg, require_vocab(meta), meta.pad_index, meta.num_classes)
