"""Optimizers and learning-rate schedulers from their configs (conf/optimizer, conf/scheduler)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from dq.config import AdamConfig, SchedulerConfig, SGDConfig


def build_optimizer(cfg: SGDConfig | AdamConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    trainable = [p for p in params if p.requires_grad]
    if isinstance(cfg, SGDConfig):
        return torch.optim.SGD(
            trainable, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    optimizer_class = torch.optim.AdamW if cfg.decoupled else torch.optim.Adam
    return optimizer_class(trainable, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def build_scheduler(
    cfg: SchedulerConfig, optimizer: torch.optim.Optimizer, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per epoch; ``none`` keeps the learning rate constant."""
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=cfg.eta_min)
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return None
