"""Fully connected classifier on flattened float inputs (image, tabular, series)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dq.config import MLPConfig
from dq.data.types import DatasetMeta
from dq.models.layers import Normalize, activation, require_shape
from dq.models.registry import register


class MLP(nn.Module):
    """``normalize → body (Flatten, then Linear → activation → Dropout per hidden size) → head``.

    ``normalize`` is a ``Normalize`` on images (they arrive in pixel space) and the
    identity on tabular and series data (standardised by the dataset already). ``head``
    is the classifier, a plain ``nn.Linear``, as in every dq model.
    """

    def __init__(self, cfg: MLPConfig, meta: DatasetMeta, normalize: Normalize | None) -> None:
        super().__init__()
        self.normalize = normalize if normalize is not None else nn.Identity()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(meta.input_shape)
        for size in cfg.hidden:
            layers += [nn.Linear(width, size), activation(cfg.activation), nn.Dropout(cfg.dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, meta.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.normalize(x)))


@register("mlp", "image", "tabular", "series")
def build_mlp(cfg: MLPConfig, meta: DatasetMeta) -> MLP:
    """An ``MLP`` for ``meta``; images get a ``Normalize`` with the dataset statistics."""
    normalize = None
    if meta.modality == "image":
        require_shape(meta, 3, "[C, H, W]")
        normalize = Normalize.from_meta(meta)
    return MLP(cfg, meta, normalize)
