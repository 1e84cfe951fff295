"""PreAct ResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027) in its CIFAR form, the model of Wong et al. 2020's fast adversarial
training and of RobustBench's ``PreActResNet18``.

CIFAR form: a 3×3 stride-1 stem with no max-pool (an ImageNet 7×7/2 stem and pool would
leave 8×8 of a 32×32 image before the first block), four stages of two pre-activation
blocks with ``width·(1, 2, 4, 8)`` channels, the later three starting at stride 2, then
BatchNorm → ReLU → global average pooling → ``head``. A pre-activation block computes
``x + conv(relu(bn(conv(relu(bn(x))))))``; where the shape changes, the shortcut is a 1×1
strided convolution of the pre-activated input. The pooling is adaptive, so 8×8 digits
(1×1 after the last stage) and 28×28 MNIST build from the same config as 32×32 CIFAR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.layers import Normalize, preact_pool, require_shape
from dq.models.registry import PRUNE_GLOBAL, Capabilities, register

# Beyond any published network (ResNet-1001 has 111 blocks a stage; each stage halves the
# image, so 8 already pool 32×32 CIFAR to 1×1), and past what builds in seconds.
MAX_BLOCKS, MAX_STAGES = 500, 8


@dataclass
class PreActResNetConfig:
    """PreAct ResNet: ``width`` channels in the first stage (64 in the paper), doubling in
    each later stage; ``blocks`` per stage ([2, 2, 2, 2] is ResNet-18)."""

    name: str = "preact_resnet18"
    width: int = 64
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])

    def validate(self) -> None:
        require(self.width > 0, "width", f"must be > 0, got {self.width}")
        require(
            0 < len(self.blocks) <= MAX_STAGES and all(0 < b <= MAX_BLOCKS for b in self.blocks),
            "blocks",
            f"must be 1 to {MAX_STAGES} counts from 1 to {MAX_BLOCKS}, got {list(self.blocks)}",
        )


class PreActBlock(nn.Module):
    """``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``, both convolutions 3×3 without bias
    (BatchNorm follows each); the shortcut is 1×1 at ``stride`` where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # one module per use, for captum's DeepLift
        reshapes = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if reshapes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.conv2(self.relu2(self.bn2(self.conv1(activated)))) + shortcut


class PreActResNet(nn.Module):
    """``normalize → stem (3×3 conv) → stages → BatchNorm → ReLU → average pool → head``."""

    def __init__(self, cfg: PreActResNetConfig, meta: DatasetMeta) -> None:
        super().__init__()
        self.normalize = Normalize.from_meta(meta)
        self.stem = nn.Conv2d(meta.input_shape[0], cfg.width, 3, stride=1, padding=1, bias=False)
        stages, channels = [], cfg.width
        for index, count in enumerate(cfg.blocks):
            out_channels = cfg.width * 2**index
            blocks = [PreActBlock(channels, out_channels, 1 if index == 0 else 2)]
            blocks += [PreActBlock(out_channels, out_channels, 1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = preact_pool(channels)
        self.head = nn.Linear(channels, meta.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stages(self.stem(self.normalize(x)))))


# Global magnitude prunes its convolutions and head; structured pruning is for plain MLPs and CNNs.
@register(
    "preact_resnet18",
    "image",
    schema=PreActResNetConfig,
    capabilities=Capabilities(prune=PRUNE_GLOBAL, channels_last=True),
)
def build_preact_resnet(cfg: PreActResNetConfig, meta: DatasetMeta) -> PreActResNet:
    """PreAct ResNet on ``[N, C, H, W]`` pixels in [0, 1], normalised inside with the dataset statistics."""
    require_shape(meta, 3, "[C, H, W]")
    return PreActResNet(cfg, meta)
