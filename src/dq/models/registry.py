"""Which model builds on which modality, filled by a decorator instead of if/else chains.

Each model module is one plugin: its config schema and one builder per set of modalities
it supports, registered together::

    @register("rnn", "text", schema=RNNConfig)
    def build_text_rnn(cfg: RNNConfig, meta: DatasetMeta) -> nn.Module: ...

    @register("cnn", "image", schema=CNNConfig, capabilities=Capabilities(prune=PRUNE_ALL, channels_last=True))

The support matrix (and the error message for a pair that is not in it) is derived from
what was registered, so adding a model or a modality touches one file. So are the model's
capabilities on each modality (``Capabilities``: which pruning kinds handle it, whether
it runs channels-last), which compression and the fast path ask about instead of listing
model names. The modules of this package are found by ``dq.registry.Registry`` (no
import list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dq.config.compress import PruneKind
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.registry import Entry, Registry

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[Any, DatasetMeta], "nn.Module"]


@dataclass(frozen=True)
class Capabilities:
    """What a model can do on one modality, declared where its builder registers.

    Attributes:
        prune: the ``compress.kind`` values that handle it (global magnitude prunes Linear
            and Conv weights, so an RNN, whose recurrent weights are neither, has none;
            structured pruning follows the dependency graph of plain MLPs and CNNs only).
        channels_last: its 4-D weights and inputs may be stored NHWC (``trainer.channels_last``).
        tokenizer: for a text model with a vocabulary of its own (a pretrained encoder), the
            path of the ``tokenizer.json`` its ids come from, given its config; the run reads
            the text with it (``dataset.tokenizer``). None: dq's word tokenizer.
    """

    prune: frozenset[PruneKind] = frozenset()
    channels_last: bool = False
    tokenizer: Callable[[Any], str] | None = None


PRUNE_ALL = frozenset(PruneKind)
PRUNE_GLOBAL = frozenset({PruneKind.global_magnitude})


@dataclass(frozen=True)
class Registered:
    """One model on one modality: its builder and what it can do there."""

    builder: Builder
    capabilities: Capabilities


# model name -> {modality: its builder and capabilities}
MODELS: Registry[dict[str, Registered]] = Registry("model", package="dq.models")


def register(
    name: str, *modalities: str, schema: type | None = None, capabilities: Capabilities | None = None
) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(cfg, meta)`` builds model ``name`` for each of ``modalities``,
    which can then do what ``capabilities`` says (nothing beyond training when None).

    The first registration of ``name`` gives its config ``schema``."""
    if not modalities:
        raise ValueError(f"register({name!r}) needs at least one modality")

    def decorate(builder: Builder) -> Builder:
        entry = MODELS.registered(name) or MODELS.add(name, {}, schema=schema)
        if schema is not None and entry.schema is not schema:
            raise ValueError(f"model {name!r} is registered with two schemas")
        taken = sorted(set(modalities) & set(entry.value))
        if taken:
            raise ValueError(f"model {name!r} already has a builder for {taken[0]} data")
        entry.value.update(dict.fromkeys(modalities, Registered(builder, capabilities or Capabilities())))
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
    return tuple(entry.name for entry in MODELS if entry.value.get(modality) is not None)


def lookup(name: str, meta: DatasetMeta) -> Builder:
    """The builder of model ``name`` for ``meta.modality``.

    Raises:
        DQUserError: one line naming the model, the modality, the dataset and the models
            that do support that modality.
    """
    registered = model_entry(name).value.get(meta.modality)
    if registered is None:
        allowed = ", ".join(models_for(meta.modality)) or "none"
        raise DQUserError(
            f"model {name} does not support {meta.modality} data (dataset {meta.name}); "
            f"models for {meta.modality} data: {allowed}"
        )
    return registered.builder


def capabilities(name: str, meta: DatasetMeta) -> Capabilities:
    """What model ``name`` can do on ``meta``'s modality (nothing where it does not build)."""
    registered = model_entry(name).value.get(meta.modality)
    return Capabilities() if registered is None else registered.capabilities


def text_tokenizer(cfg: Any) -> str | None:
    """The ``tokenizer.json`` model ``cfg.name`` reads text with (its ``Capabilities.tokenizer``),
    or None where it uses dq's word tokenizer or does not build on text."""
    registered = model_entry(str(cfg.name)).value.get("text")
    choose = None if registered is None else registered.capabilities.tokenizer
    return None if choose is None else choose(cfg)


def capable(test: Callable[[Capabilities], bool]) -> str:
    """Where ``test`` holds, for an error message: "model=cnn on image, series data; ..."
    (sorted; "no model" when nowhere)."""
    found = []
    for entry in MODELS:
        modalities = sorted(modality for modality, registered in entry.value.items() if test(registered.capabilities))
        if modalities:
            found.append(f"model={entry.name} on {', '.join(modalities)} data")
    return "; ".join(found) or "no model"


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
