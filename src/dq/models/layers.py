"""Small pieces several models share: input normalisation, activations, shape checks."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import torch
from torch import nn

from dq.data_records import DatasetMeta
from dq.errors import DQUserError


class Activation(StrEnum):
    relu = "relu"
    gelu = "gelu"
    tanh = "tanh"


_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.relu: nn.ReLU,
    Activation.gelu: nn.GELU,
    Activation.tanh: nn.Tanh,
}


def activation(name: Activation | str) -> nn.Module:
    """A fresh activation module for the config enum (or its string value)."""
    return _ACTIVATIONS[Activation(name)]()


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` on ``[N, C, ...]`` inputs, as the model's first layer.

    Image data stays in pixel space ([0, 1]) outside the model, so attacks clamp to the
    valid range and explanations are drawn over real pixels; the training statistics
    live here as buffers and travel with the checkpoint.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        super().__init__()
        mean_t = _per_channel(mean, channels, default=0.0, what="input_mean")
        std_t = _per_channel(std, channels, default=1.0, what="input_std")
        if not all(
            float(value) > 0 for value in std
        ):  # the given values, not the tensor: dq.models.size builds on meta
            raise DQUserError(f"dataset input_std must be > 0 for every channel, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    @classmethod
    def from_meta(cls, meta: DatasetMeta) -> Normalize:
        """Normalisation with the dataset's training statistics (channels = input_shape[0]).

        A dataset that gives no statistics gets the identity (mean 0, std 1).
        """
        return cls(meta.input_mean, meta.input_std, channels=meta.input_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


def _per_channel(values: Sequence[float], channels: int, default: float, what: str) -> torch.Tensor:
    """One value per channel: empty → ``default``, a single value → broadcast."""
    if len(values) == 0:
        values = [default]
    if len(values) == 1:
        values = list(values) * channels
    if len(values) != channels:
        raise DQUserError(f"dataset {what} has {len(values)} values for {channels} input channels")
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def preact_pool(channels: int) -> nn.Sequential:
    """The end of a pre-activation residual network (He et al. 2016, PreAct ResNet and
    WideResNet alike): its blocks end on a convolution, so the features are normalised and
    activated once more, then averaged over space, ``[N, C, H, W]`` → ``[N, C]`` for the head."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def require_shape(meta: DatasetMeta, ndim: int, layout: str) -> tuple[int, ...]:
    """``meta.input_shape`` if it has ``ndim`` dimensions (``layout`` names them), else a DQUserError."""
    shape = tuple(int(s) for s in meta.input_shape)
    if len(shape) != ndim or any(s <= 0 for s in shape):
        raise DQUserError(
            f"{meta.modality} dataset {meta.name} must have input_shape {layout}, got {tuple(meta.input_shape)}"
        )
    return shape


def require_vocab(meta: DatasetMeta) -> int:
    """The vocabulary size of a text dataset (pad_index must be one of its ids)."""
    size = len(meta.vocab)
    if size == 0 or not 0 <= meta.pad_index < size:
        raise DQUserError(
            f"text dataset {meta.name} needs a vocab that contains pad_index {meta.pad_index}, got {size} tokens"
        )
    return size


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
