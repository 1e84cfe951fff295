"""Reference inputs that attributions are measured against: zeros, a blurred input, or the
training mean.

Float inputs (image, tabular, series) get a baseline of the input's shape. Token inputs
have one baseline only: the pad token, whose embedding is the zero vector (the models
build their embedding with ``padding_idx``), so "zeros" is the zero embedding there;
a blurred or averaged token id means nothing and is refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dq.config.explain import Baseline
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.modalities import modality_of


def check_baseline(kind: Baseline | str, meta: DatasetMeta) -> Baseline:
    """``kind`` if the data's modality allows it (``Modality.baselines``), else a one-line DQUserError."""
    kind = Baseline(kind)
    allowed = modality_of(meta).baselines
    if kind not in allowed:
        names = ", ".join(str(b) for b in allowed)
        raise DQUserError(
            f"explain.baseline={kind} does not apply to {meta.modality} data (dataset {meta.name}); allowed: {names}"
        )
    return kind


def float_baseline(kind: Baseline | str, x: torch.Tensor, train_mean: torch.Tensor, meta: DatasetMeta) -> torch.Tensor:
    """A baseline shaped like ``x`` (float inputs [N, ...]); ``train_mean`` [1, ...] is the
    training split's mean example (``dq.data_records.input_stats``)."""
    kind = check_baseline(kind, meta)
    if kind == Baseline.zeros:
        return torch.zeros_like(x)
    if kind == Baseline.mean:
        return train_mean.to(x.device, x.dtype).expand_as(x).contiguous()
    return gaussian_blur(x, sigma=modality_of(meta).blur_sigma(meta))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable gaussian blur over the trailing spatial dims of ``[N, C, T]`` or
    ``[N, C, H, W]``, edges replicated (a constant input stays constant)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)

    def along_last(t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(-1, 1, t.shape[-1])
        return F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel).reshape(t.shape)

    out = along_last(x)
    if x.dim() == 4:
        out = along_last(out.transpose(-1, -2).contiguous()).transpose(-1, -2)
    return out.contiguous()
