"""Fully connected classifier on flattened float inputs (image, tabular, series)."""

from __future__ import annotations

import math

from torch import nn

from dq.config import MLPConfig
from dq.data.types import DatasetMeta
from dq.models.layers import Normalize, activation, require_shape
from dq.models.registry import register


@register("mlp", "image", "tabular", "series")
def build_mlp(cfg: MLPConfig, meta: DatasetMeta) -> nn.Sequential:
    """``[Normalize] → Flatten → (Linear → activation → Dropout) per hidden size → Linear``.

    Images get a ``Normalize`` first (they arrive in pixel space); tabular and series
    data are standardised by the dataset already.
    """
    layers: list[nn.Module] = []
    if meta.modality == "image":
        require_shape(meta, 3, "[C, H, W]")
        layers.append(Normalize.from_meta(meta))
    layers.append(nn.Flatten())
    width = math.prod(meta.input_shape)
    for size in cfg.hidden:
        layers += [nn.Linear(width, size), activation(cfg.activation), nn.Dropout(cfg.dropout)]
        width = size
    layers.append(nn.Linear(width, meta.num_classes))
    return nn.Sequential(*layers)
