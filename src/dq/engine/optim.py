"""Optimizers and learning-rate schedulers from their configs (conf/optimizer, conf/scheduler),
by a table per choice rather than an if/else chain on names."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from dq.config.optimizer import AdamConfig, SGDConfig
from dq.config.scheduler import SchedulerConfig, SchedulerName

Scheduler = torch.optim.lr_scheduler.LRScheduler


def _sgd(cfg: SGDConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )


def _adam(cfg: AdamConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if cfg.decoupled else torch.optim.Adam
    return optimizer_class(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


OPTIMIZERS: dict[type, Callable[..., torch.optim.Optimizer]] = {SGDConfig: _sgd, AdamConfig: _adam}

SCHEDULERS: dict[SchedulerName, Callable[[SchedulerConfig, torch.optim.Optimizer, int], Scheduler | None]] = {
    SchedulerName.none: lambda cfg, optimizer, epochs: None,
    SchedulerName.cosine: lambda cfg, optimizer, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs, eta_min=cfg.eta_min
    ),
    SchedulerName.step: lambda cfg, optimizer, epochs: torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.step_size, gamma=cfg.gamma
    ),
    SchedulerName.cyclic: lambda cfg, optimizer, epochs: torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: one_cycle(epoch, epochs, cfg.peak)
    ),
}

# Schedules laid out over the run's epoch count: a run extended by resuming (more
# trainer.epochs) cannot follow them as if it had been planned that long from the start.
EPOCH_SHAPED_SCHEDULERS = frozenset({SchedulerName.cosine, SchedulerName.cyclic})


def one_cycle(epoch: int, epochs: int, peak: float) -> float:
    """The factor of the optimizer's lr in ``epoch`` (0-based) of ``epochs``: a triangle from
    0 up to 1 at fraction ``peak`` of the run and down to 0 at its end, read at the middle
    of the epoch.

    Wong et al. 2020 step this triangle every batch; dq's schedulers step once per epoch,
    so each epoch trains at the rate the triangle has halfway through it (the first epoch
    at ``0.5 / (epochs · peak)`` of the peak instead of starting from 0).
    """
    progress = (epoch + 0.5) / epochs
    return progress / peak if progress <= peak else (1.0 - progress) / (1.0 - peak)


def build_optimizer(cfg: SGDConfig | AdamConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters (frozen ones get no state)."""
    return OPTIMIZERS[type(cfg)](cfg, [p for p in params if p.requires_grad])


def build_scheduler(cfg: SchedulerConfig, optimizer: torch.optim.Optimizer, epochs: int) -> Scheduler | None:
    """Stepped once per epoch; ``none`` keeps the learning rate constant."""
    return SCHEDULERS[SchedulerName(cfg.name)](cfg, optimizer, epochs)
