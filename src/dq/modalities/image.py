"""Images: float pixels [C, H, W] in ``meta.valid_range`` ([0, 1]), normalised inside the model."""

from __future__ import annotations

import math

import torch

from dq.config.explain import Baseline
from dq.data_records import DatasetMeta
from dq.modalities.base import Modality, Picture, register


@register
class Image(Modality):
    """Every pixel moves under an attack, clipped to the valid range; attributions are
    grouped in square superpixels."""

    name = "image"
    picture = Picture.heatmaps
    baselines = (Baseline.zeros, Baseline.blur, Baseline.mean)
    pixels = True

    def patch_size(self, meta: DatasetMeta) -> int:
        """About 7 superpixels per image side: 2×2 on 8×8 digits, 4×4 on 28×28."""
        return max(2, math.ceil(min(meta.input_shape[1:]) / 7))

    def blur_sigma(self, meta: DatasetMeta) -> float:
        """An eighth of the image side (at least one pixel): removes the shapes a model reads."""
        return max(1.0, min(meta.input_shape[1:]) / 8)

    def feature_groups(self, meta: DatasetMeta, inputs: torch.Tensor, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """A superpixel per image patch, the same for every channel."""
        p = self.patch_size(meta)
        channels, height, width = inputs.shape[1:]
        rows = torch.arange(height, device=inputs.device) // p
        cols = torch.arange(width, device=inputs.device) // p
        grid = rows[:, None] * math.ceil(width / p) + cols[None, :]
        mask = grid.expand(channels, height, width)
        return [mask.unsqueeze(0).contiguous()] * inputs.shape[0]

    def occlusion_window(self, shape: tuple[int, ...], meta: DatasetMeta) -> tuple[tuple[int, ...], tuple[int, ...]]:
        p = self.patch_size(meta)
        stride = max(1, p // 2)
        return (shape[0], p, p), (shape[0], stride, stride)
