"""Time series: float values [C, T], already standardised by the dataset, unbounded."""

from __future__ import annotations

import math

import torch

from dq.config.explain import Baseline
from dq.data_records import DatasetMeta
from dq.modalities.base import Modality, Picture, register


@register
class Series(Modality):
    """Every value moves under an attack, unclipped (``valid_range`` is None); attributions
    are grouped in windows of consecutive steps."""

    name = "series"
    picture = Picture.signals
    baselines = (Baseline.zeros, Baseline.blur, Baseline.mean)

    def patch_size(self, meta: DatasetMeta) -> int:
        """About 15 windows per series."""
        return max(1, math.ceil(meta.input_shape[-1] / 15))

    def blur_sigma(self, meta: DatasetMeta) -> float:
        """A twentieth of the series (at least one step)."""
        return max(1.0, meta.input_shape[-1] / 20)

    def feature_groups(self, meta: DatasetMeta, inputs: torch.Tensor, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """A window of steps per feature, the same for every channel."""
        p = self.patch_size(meta)
        channels, steps = inputs.shape[1:]
        mask = (torch.arange(steps, device=inputs.device) // p).expand(channels, steps)
        return [mask.unsqueeze(0).contiguous()] * inputs.shape[0]

    def occlusion_window(self, shape: tuple[int, ...], meta: DatasetMeta) -> tuple[tuple[int, ...], tuple[int, ...]]:
        p = self.patch_size(meta)
        return (shape[0], p), (shape[0], max(1, p // 2))
