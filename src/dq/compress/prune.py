"""Pruning a trained model to a target sparsity, in two forms:

- ``global_magnitude``: ``torch.nn.utils.prune.global_unstructured`` with L1 magnitude over
  the weights of every Linear and Conv layer (and a transformer's attention in-projection),
  so the smallest weights of the whole network are zeroed, wherever they are. The masks stay
  on during fine-tuning (the pruned weights stay zero) and ``prune.remove`` makes them
  permanent before anything is saved.
- ``structured``: torch-pruning's ``MetaPruner`` with ``MagnitudeImportance`` (L2) removes
  ``amount`` of the units and channels of each layer (per-layer, not global: a global
  ranking can empty a whole layer), following the dependency graph (BatchNorm, flatten into
  the hidden layer), never the classifier ``head``; the model really has fewer parameters.

The sparsity reached is measured on the weights themselves, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from dq.config.compress import PruneConfig, PruneKind
from dq.data_records import DatasetMeta, Splits
from dq.engine.loop import FitSettings, fit
from dq.engine.optim import build_optimizer
from dq.errors import DQUserError
from dq.models.registry import capabilities, capable
from dq.objectives.registry import build_objective

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass
class Pruned:
    """A pruned model and what pruning reached: ``sparsity`` is the share of zeros among
    the weights that pruning ranked (``pruned_weights`` of them; for structured pruning,
    the share of those weights removed)."""

    model: nn.Module
    sparsity: float
    pruned_weights: int
    note: str


def check_prunable(cfg: PruneConfig, model_name: str, meta: DatasetMeta) -> None:
    """Refuse, before anything runs, a model the pruning kind does not handle (each model
    declares the kinds that handle it where it registers: ``Capabilities.prune``).

    Raises:
        DQUserError: one line naming the kind, the model and what is supported.
    """
    kind = PruneKind(cfg.kind)
    if kind not in capabilities(model_name, meta).prune:
        raise DQUserError(
            f"compress.kind={kind.value} cannot prune model={model_name} on {meta.modality} data; "
            f"supported: {capable(lambda can: kind in can.prune)}"
        )


def prune_targets(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """The (module, parameter name) pairs global magnitude pruning ranks together."""
    targets: list[tuple[nn.Module, str]] = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]
    targets += [
        (m, "in_proj_weight")
        for m in model.modules()
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None
    ]
    return targets


def zero_share(targets: list[tuple[nn.Module, str]]) -> tuple[float, int]:
    """(share of exact zeros, count) over the targets' weights as the model uses them."""
    weights = [getattr(module, name).detach() for module, name in targets]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return (zeros / total if total else 0.0), total


def global_magnitude(model: nn.Module, amount: float) -> list[tuple[nn.Module, str]]:
    """Zero the ``amount`` smallest-magnitude weights across all targets (masks kept on)."""
    targets = prune_targets(model)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    return targets


def structured(model: nn.Module, amount: float, example: torch.Tensor) -> tuple[float, int]:
    """Remove ``amount`` of each layer's units/channels (the head's outputs kept); returns
    (share of the prunable weights removed, their count before)."""
    import torch_pruning as tp  # imported only when structured pruning is chosen

    before = sum(getattr(m, n).numel() for m, n in prune_targets(model))
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=amount,
        global_pruning=False,
        ignored_layers=[model.head],
    )
    pruner.step()
    after = sum(getattr(m, n).numel() for m, n in prune_targets(model))
    return (1 - after / before if before else 0.0), before


def prune_model(model: nn.Module, cfg: PruneConfig, splits: Splits, spec: Any, device: torch.device) -> Pruned:
    """Prune ``model`` in place as ``cfg`` says, fine-tune it ``cfg.finetune_epochs`` epochs
    through the run's own objective (``spec``: the run's RunSpec), and return it in eval mode."""
    model.eval()
    if PruneKind(cfg.kind) is PruneKind.global_magnitude:
        targets = global_magnitude(model, cfg.amount)
        finetune(model, cfg.finetune_epochs, splits, spec, device)
        for module, name in targets:  # permanent: plain weights with zeros, no masks or hooks
            prune.remove(module, name)
        sparsity, count = zero_share(targets)
        note = f"global magnitude (L1) over {len(targets)} weight tensors, {count} weights"
    else:
        example = splits.train.batch(slice(0, 2)).x.to(device)
        sparsity, count = structured(model, cfg.amount, example)
        finetune(model, cfg.finetune_epochs, splits, spec, device)
        note = (
            f"structured (torch-pruning, L2 magnitude per layer, head kept): {sparsity:.1%} of {count} weights removed"
        )
    if cfg.finetune_epochs:
        note += f"; fine-tuned {cfg.finetune_epochs} epochs through the run's objective"
    model.eval()
    return Pruned(model=model, sparsity=sparsity, pruned_weights=count, note=note)


def finetune(model: nn.Module, epochs: int, splits: Splits, spec: Any, device: torch.device) -> None:
    """``epochs`` epochs of the run's objective and optimizer (its regularizers included), the
    last epoch kept; with prune masks on, the pruned weights get no update and stay zero."""
    if epochs <= 0:
        return
    trainer = replace(
        spec.trainer,
        epochs=epochs,
        select="last",
        checkpoints=False,
        progress=False,
        early_stopping=replace(spec.trainer.early_stopping, enabled=False),
    )
    objective = build_objective(spec.regularizer, splits.meta)
    optimizer = build_optimizer(spec.optimizer, [p for p in model.parameters() if p.requires_grad])
    settings = FitSettings(trainer, device, spec.seed)
    result = fit(model, objective, splits, optimizer=optimizer, scheduler=None, settings=settings)
    if result.best_state is not None:
        model.load_state_dict(result.best_state)


def shapes(model: nn.Module) -> dict[str, list[int]]:
    """Every parameter's and buffer's shape: what rebuilds a structured-pruned model."""
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def reshape_like(model: nn.Module, saved: dict[str, list[int]]) -> nn.Module:
    """Resize a freshly built model's tensors (and its layers' size attributes) to ``saved``
    shapes, so a structured-pruned state dict loads into it with ``load_state_dict``."""
    for key, shape in saved.items():
        owner_name, _, attr = key.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        current = getattr(owner, attr, None)
        if not isinstance(current, torch.Tensor) or list(current.shape) == shape:
            continue
        fresh = torch.zeros(shape, dtype=current.dtype, device=current.device)
        if isinstance(current, nn.Parameter):
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=current.requires_grad))
        else:
            owner.register_buffer(attr, fresh)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.Conv1d | nn.Conv2d):
            module.out_channels = module.weight.shape[0]
            module.in_channels = module.weight.shape[1] * module.groups
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.weight is not None:
            module.num_features = module.weight.shape[0]
    return model
