"""Which model builds on which modality, filled by a decorator instead of if/else chains.

Each model module registers one builder per set of modalities it supports::

    @register("rnn", "text")
    def build_text_rnn(cfg: RNNConfig, meta: DatasetMeta) -> nn.Module: ...

The support matrix (and the error message for a pair that is not in it) is derived from
what was registered, so adding a model or a modality touches one file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dq.data.types import DatasetMeta
from dq.errors import DQUserError

Builder = Callable[[Any, DatasetMeta], nn.Module]

# model name -> modality -> builder; insertion order is the order errors list models in.
_REGISTRY: dict[str, dict[str, Builder]] = {}


def register(name: str, *modalities: str) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(cfg, meta)`` builds model ``name`` for each of ``modalities``."""
    if not modalities:
        raise ValueError(f"register({name!r}) needs at least one modality")

    def decorate(builder: Builder) -> Builder:
        by_modality = _REGISTRY.setdefault(name, {})
        for modality in modalities:
            if modality in by_modality:
                raise ValueError(f"model {name!r} already has a builder for {modality} data")
            by_modality[modality] = builder
        return builder

    return decorate


def model_names() -> tuple[str, ...]:
    """Every registered model name, in registration order."""
    return tuple(_REGISTRY)


def supported_modalities(name: str) -> tuple[str, ...]:
    """The modalities model ``name`` builds on (DQUserError for an unknown name)."""
    return tuple(_builders(name))


def models_for(modality: str) -> tuple[str, ...]:
    """The models that build on ``modality``, in registration order."""
    return tuple(name for name, by_modality in _REGISTRY.items() if modality in by_modality)


def lookup(name: str, meta: DatasetMeta) -> Builder:
    """The builder of model ``name`` for ``meta.modality``.

    Raises:
        DQUserError: one line naming the model, the modality, the dataset and the models
            that do support that modality.
    """
    by_modality = _builders(name)
    if meta.modality not in by_modality:
        allowed = ", ".join(models_for(meta.modality)) or "none"
        raise DQUserError(
            f"model {name} does not support {meta.modality} data (dataset {meta.name}); "
            f"models for {meta.modality} data: {allowed}"
        )
    return by_modality[meta.modality]


def _builders(name: str) -> dict[str, Builder]:
    if name not in _REGISTRY:
        raise DQUserError(f"unknown model {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
