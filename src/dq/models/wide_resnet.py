"""Wide residual network (Zagoruyko & Komodakis 2016, arXiv:1605.07146), WRN-28-10 by
default: RobustBench's standard architecture for CIFAR-10 robustness (Madry-style PGD
training, TRADES and most of its leaderboard).

WRN-d-k: a 3×3 stem with 16 channels, three groups of ``n = (d − 4) / 6`` pre-activation
basic blocks with ``16k``, ``32k`` and ``64k`` channels (the second and third groups start
at stride 2), then BatchNorm → ReLU → global average pooling → ``head``. A block is
``x + conv(dropout(relu(bn(conv(relu(bn(x)))))))``, with a 1×1 strided convolution of the
pre-activated input as the shortcut where the width or stride changes. ``depth`` and
``widen_factor`` are free, so a test builds WRN-10-1 (about 78 k parameters) in
milliseconds; the pooling is adaptive, so 8×8 and 28×28 images build as 32×32 ones do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.layers import Normalize, preact_pool, require_shape
from dq.models.registry import PRUNE_GLOBAL, Capabilities, register

# Beyond any published WRN (the paper's deepest is WRN-40-x; ResNet-1001 is the deepest
# residual network of the series), and past what builds in seconds.
MAX_DEPTH = 1000


@dataclass
class WideResNetConfig:
    """WRN-``depth``-``widen_factor``: depth 6n + 4 (28 → 4 blocks per group), widths
    ``16·widen_factor·(1, 2, 4)``, ``dropout`` between a block's convolutions (the paper
    used 0.3 on CIFAR; RobustBench's models 0)."""

    name: str = "wide_resnet"
    depth: int = 28
    widen_factor: int = 10
    dropout: float = 0.0

    def validate(self) -> None:
        require(
            10 <= self.depth <= MAX_DEPTH and (self.depth - 4) % 6 == 0,
            "depth",
            f"must be 6n + 4 from 10 to {MAX_DEPTH} (10, 16, 22, 28, 34, ...), got {self.depth}",
        )
        require(self.widen_factor > 0, "widen_factor", f"must be > 0, got {self.widen_factor}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


class WideBlock(nn.Module):
    """``x + conv2(dropout(relu(bn2(conv1(relu(bn1(x)))))))``, 3×3 convolutions without bias;
    the shortcut is a 1×1 convolution at ``stride`` of the pre-activated input where the
    shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # one module per use, for captum's DeepLift
        reshapes = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if reshapes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(activated))))) + shortcut


class WideResNet(nn.Module):
    """``normalize → stem (3×3, 16 channels) → three groups → BatchNorm → ReLU → average pool → head``."""

    def __init__(self, cfg: WideResNetConfig, meta: DatasetMeta) -> None:
        super().__init__()
        per_group = (cfg.depth - 4) // 6
        self.normalize = Normalize.from_meta(meta)
        self.stem = nn.Conv2d(meta.input_shape[0], 16, 3, stride=1, padding=1, bias=False)
        groups, channels = [], 16
        for index in range(3):
            out_channels = 16 * cfg.widen_factor * 2**index
            blocks = [WideBlock(channels, out_channels, 1 if index == 0 else 2, cfg.dropout)]
            blocks += [WideBlock(out_channels, out_channels, 1, cfg.dropout) for _ in range(per_group - 1)]
            groups.append(nn.Sequential(*blocks))
            channels = out_channels
        self.groups = nn.Sequential(*groups)
        self.pool = preact_pool(channels)
        self.head = nn.Linear(channels, meta.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.groups(self.stem(self.normalize(x)))))


# Global magnitude prunes its convolutions and head; structured pruning is for plain MLPs and CNNs.
@register(
    "wide_resnet", "image", schema=WideResNetConfig, capabilities=Capabilities(prune=PRUNE_GLOBAL, channels_last=True)
)
def build_wide_resnet(cfg: WideResNetConfig, meta: DatasetMeta) -> WideResNet:
    """WRN on ``[N, C, H, W]`` pixels in [0, 1], normalised inside with the dataset statistics."""
    require_shape(meta, 3, "[C, H, W]")
    return WideResNet(cfg, meta)
