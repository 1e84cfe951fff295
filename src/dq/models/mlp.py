"""Fully connected classifier on flattened float inputs (image, tabular, series)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from dq.config.validation import require
from dq.models.layers import Activation, Normalize, activation, require_shape
from dq.models.registry import register
from dq.records import DatasetMeta


@dataclass
class MLPConfig:
    """Fully connected network on flattened float inputs (image, tabular, series)."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.1
    activation: Activation = Activation.relu

    def validate(self) -> None:
        require(all(h > 0 for h in self.hidden), "hidden", f"sizes must be > 0, got {list(self.hidden)}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


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


@register("mlp", "image", "tabular", "series", schema=MLPConfig)
def build_mlp(cfg: MLPConfig, meta: DatasetMeta) -> MLP:
    """An ``MLP`` for ``meta``; images get a ``Normalize`` with the dataset statistics."""
    normalize = None
    if meta.modality == "image":
        require_shape(meta, 3, "[C, H, W]")
        normalize = Normalize.from_meta(meta)
    return MLP(cfg, meta, normalize)
