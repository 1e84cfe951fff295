"""Models: plain ``nn.Module``s mapping ``x`` to logits ``[N, num_classes]``.

``build(cfg.model, meta)`` looks the model name and the dataset's modality up in the
registry that the model modules fill on import. A model knows nothing of how it is
trained, attacked or explained; token models expose their ``embedding`` layer and image
models normalise inside, so everything outside works in token / pixel space. Every
model's classifier is a ``nn.Linear`` named ``head``. ``apply_lora`` / ``merge_lora``
(dq.models.lora) and ``load_pretrained`` (dq.models.pretrained) adapt a built model.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from dq.data.types import DatasetMeta
from dq.models.layers import Normalize
from dq.models.lora import LoRASummary, apply_lora, merge_lora
from dq.models.pretrained import PretrainedInfo, load_pretrained
from dq.models.registry import lookup, model_names, models_for, supported_modalities

__all__ = [
    "LoRASummary",
    "Normalize",
    "PretrainedInfo",
    "apply_lora",
    "build",
    "count_parameters",
    "load_pretrained",
    "merge_lora",
    "model_names",
    "models_for",
    "supported_modalities",
]

# Imported for their @register side effect, in the order error messages list models in.
for _module in ("mlp", "cnn", "rnn", "attention"):
    importlib.import_module(f"dq.models.{_module}")


def build(cfg: Any, meta: DatasetMeta) -> nn.Module:
    """The model ``cfg.name`` for ``meta``'s modality, freshly initialised from torch's RNG.

    Raises:
        DQUserError: the name is unknown, or the model does not support the modality.
    """
    return lookup(str(cfg.name), meta)(cfg, meta)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared parameters count once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
