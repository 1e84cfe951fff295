"""Tabular data: float columns [F], standardised continuous ones (``meta.continuous_columns``)
and one-hot ones (0 or 1), with their names in ``meta.feature_names``."""

from __future__ import annotations

import torch

from dq.config.explain import Baseline
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.modalities.base import Modality, Picture, register


@register
class Tabular(Modality):
    """Only the continuous columns move under an attack, unclipped: a one-hot column moved
    off 0 or 1 is no longer a category. Each column is one feature of an explanation."""

    name = "tabular"
    picture = Picture.bars
    baselines = (Baseline.zeros, Baseline.mean)
    columns = True

    def attackable(self, meta: DatasetMeta) -> bool:
        return bool(meta.continuous_columns)

    def attack_bounds(self, meta: DatasetMeta) -> tuple[float, float] | None:
        return None

    def fixed_inputs(self, meta: DatasetMeta) -> torch.Tensor | None:
        """The one-hot columns (None when every column is continuous)."""
        fixed = torch.ones((1, *meta.input_shape), dtype=torch.bool)
        fixed[:, list(meta.continuous_columns)] = False
        return fixed if bool(fixed.any()) else None

    def attack_mask(self, meta: DatasetMeta) -> torch.Tensor:
        """1 on the continuous columns, 0 on the one-hot ones.

        Raises:
            DQUserError: the data has no continuous column, so nothing could move.
        """
        if not meta.continuous_columns:
            raise DQUserError(
                f"an attack on tabular data moves the continuous columns only; dataset {meta.name} has none"
            )
        mask = torch.zeros((1, *meta.input_shape))
        mask[:, list(meta.continuous_columns)] = 1.0
        return mask

    def feature_groups(self, meta: DatasetMeta, inputs: torch.Tensor, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """A feature per column."""
        mask = torch.arange(inputs.shape[1], device=inputs.device)
        return [mask.unsqueeze(0).contiguous()] * inputs.shape[0]

    def occlusion_window(self, shape: tuple[int, ...], meta: DatasetMeta) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (1,), (1,)
