"""What an attack may change on a dataset: the valid range to clip to and the inputs that
may move, read from the dataset's metadata.

- images: every pixel moves, clipped to ``meta.valid_range`` ([0, 1]);
- tabular: only the standardised continuous columns (``meta.continuous_columns``) move,
  one-hot columns stay as they are (a feature mask), no clipping;
- series: every value moves, no clipping (``valid_range`` is None);
- text: token ids are discrete, so the attack moves the output of ``model.embedding``
  instead, never at padding positions (dq.attacks.spaces.EmbeddingSpace).
"""

from __future__ import annotations

import torch

from dq.data_records import DatasetMeta
from dq.errors import DQUserError


def attackable(meta: DatasetMeta) -> bool:
    """False for data a gradient attack cannot move: tabular data without continuous columns."""
    if meta.modality == "tabular":
        return bool(meta.continuous_columns)
    return True


def attack_bounds(meta: DatasetMeta) -> tuple[float, float] | None:
    """The range attacked inputs are clipped to: the valid range, none for tabular data."""
    return None if meta.modality == "tabular" else meta.valid_range


def feature_mask(meta: DatasetMeta) -> torch.Tensor | None:
    """Tabular data: [1, F] with 1 on the continuous columns, 0 on the one-hot ones;
    other data: None (every input moves)."""
    if meta.modality != "tabular":
        return None
    if not meta.continuous_columns:
        raise DQUserError(f"an attack on tabular data moves the continuous columns only; dataset {meta.name} has none")
    mask = torch.zeros((1, *meta.input_shape))
    mask[:, list(meta.continuous_columns)] = 1.0
    return mask
