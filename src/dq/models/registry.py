"""Which model builds on which modality, filled by a decorator instead of if/else chains.

Each model module is one plugin: its config schema and one builder per set of modalities
it supports, registered together::

    @register("rnn", "text", schema=RNNConfig)
    def build_text_rnn(cfg: RNNConfig, meta: DatasetMeta) -> nn.Module: ...

The support matrix (and the error message for a pair that is not in it) is derived from
what was registered, so adding a model or a modality touches one file. The modules of
this package are found by ``dq.registry.Registry`` (no import list).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.registry import Entry, Registry

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[Any, DatasetMeta], "nn.Module"]

# model name -> {modality: builder}
MODELS: Registry[dict[str, Builder]] = Registry("model", package="dq.models")


def register(name: str, *modalities: str, schema: type | None = None) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(cfg, meta)`` builds model ``name`` for each of ``modalities``.

    The first registration of ``name`` gives its config ``schema``."""
    if not modalities:
        raise ValueError(f"register({name!r}) needs at least one modality")

    def decorate(builder: Builder) -> Builder:
        entry = MODELS.registered(name) or MODELS.add(name, {}, schema=schema)
        if schema is not None and entry.schema is not schema:
            raise ValueError(f"model {name!r} is registered with two schemas")
        for modality in modalities:
            if modality in entry.value:
                raise ValueError(f"model {name!r} already has a builder for {modality} data")
            entry.value[modality] = builder
        return builder

    return decorate


def model_names() -> tuple[str, ...]:
    """Every registered model name, sorted."""
    return tuple(MODELS.names())


def model_entry(name: str) -> Entry[dict[str, Builder]]:
    """The registry entry of model ``name`` (DQUserError for an unknown name)."""
    return MODELS.get(name)


def supported_modalities(name: str) -> tuple[str, ...]:
    """The modalities model ``name`` builds on (DQUserError for an unknown name)."""
    return tuple(model_entry(name).value)


def models_for(modality: str) -> tuple[str, ...]:
    """The models that build on ``modality``, sorted by name."""
    return tuple(entry.name for entry in MODELS if modality in entry.value)


def lookup(name: str, meta: DatasetMeta) -> Builder:
    """The builder of model ``name`` for ``meta.modality``.

    Raises:
        DQUserError: one line naming the model, the modality, the dataset and the models
            that do support that modality.
    """
    by_modality = model_entry(name).value
    if meta.modality not in by_modality:
        allowed = ", ".join(models_for(meta.modality)) or "none"
        raise DQUserError(
            f"model {name} does not support {meta.modality} data (dataset {meta.name}); "
            f"models for {meta.modality} data: {allowed}"
        )
    return by_modality[meta.modality]


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
