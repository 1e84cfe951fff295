"""What a model costs to store: its state dict's size as ``torch.save`` writes it, its
parameter count and how many of its weights are not zero.

Two kinds of compressed weights are read as the model computes with them:
``torch.nn.utils.prune`` keeps ``<name>_orig`` and ``<name>_mask`` until the pruning is made
permanent (the effective weight is their product, which the pruning hook stores as
``<name>``), and torchao keeps int8 tensor subclasses that count through their
dequantised values (symmetric int8: a zero stays a zero).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import torch
from torch import nn

PRUNE_SUFFIX = "_orig"  # torch.nn.utils.prune's name for the weight before its mask


def size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a checkpoint of it weighs on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def effective_weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """Each parameter once, as the forward pass uses it: a pruned weight with its mask
    applied (``<name>`` rather than ``<name>_orig``)."""
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            base = name.removesuffix(PRUNE_SUFFIX)
            if base != name and hasattr(module, f"{base}_mask"):
                yield getattr(module, base)
            else:
                yield parameter


def parameter_count(model: nn.Module) -> int:
    """Number of weights (a pruned weight counts once; int8 weights count one per entry)."""
    return sum(int(weight.numel()) for weight in effective_weights(model))


def nonzeros(model: nn.Module) -> int:
    """Number of weights that are not exactly zero."""
    return sum(int(torch.count_nonzero(_plain(weight.detach()))) for weight in effective_weights(model))


def _plain(weight: torch.Tensor) -> torch.Tensor:
    """A torchao int8 tensor (a subclass without ``count_nonzero``) as its float values."""
    if type(weight) in (torch.Tensor, nn.Parameter):
        return weight
    dequantize = getattr(weight, "dequantize", None)
    return dequantize() if callable(dequantize) else weight
