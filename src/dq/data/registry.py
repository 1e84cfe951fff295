"""Dataset registry: config name -> builder, filled by ``@register`` where each builder lives.

A builder turns a :class:`~dq.config.DatasetConfig` and a split seed into whole
:class:`~dq.data.types.Splits`. ``dq.data.build`` looks the name up here, checks the
sensitive attribute against the ones the entry declares, and applies ``limit`` last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dq.config import DatasetConfig
from dq.data.types import Splits
from dq.errors import DQUserError

Builder = Callable[[DatasetConfig, int], Splits]


@dataclass(frozen=True)
class Entry:
    """One registered dataset.

    Attributes:
        name: the config choice (``conf/dataset/<name>.yaml``).
        builder: ``(cfg, split_seed) -> Splits``; it receives ``cfg.sensitive`` already
            resolved to one of ``sensitive`` (or None when the dataset has none).
        sensitive: the sensitive attributes the dataset offers, default first; empty for
            data without one (those may use ``group: label`` instead).
    """

    name: str
    builder: Builder
    sensitive: tuple[str, ...] = ()


_REGISTRY: dict[str, Entry] = {}


def register(name: str, *, sensitive: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder`` under ``name``.

    Example::

        @register("adult", sensitive=("sex", "race"))
        def build_adult(cfg: DatasetConfig, seed: int) -> Splits: ...
    """

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = Entry(name=name, builder=builder, sensitive=tuple(sensitive))
        return builder

    return decorate


def names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Entry:
    """The entry for ``name``.

    Raises:
        DQUserError: for an unknown name, listing the allowed ones.
    """
    if name not in _REGISTRY:
        raise DQUserError(f"unknown dataset {name!r}; allowed: {', '.join(names())}")
    return _REGISTRY[name]
