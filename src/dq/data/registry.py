"""Dataset registry: config name -> builder and config schema, filled by ``@register``
where each builder lives (one module per dataset family: images, tabular, text, series,
decoy). The family modules are found by ``dq.registry.Registry`` (no import list).

A builder turns its family's config (a ``DatasetConfig`` subclass) and a split seed into
whole :class:`~dq.data_records.Splits`. ``dq.data.build`` looks the name up here, checks the
sensitive attribute against the ones the entry declares, and applies ``limit`` last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING

from dq.config.validation import require
from dq.data_records import Splits
from dq.registry import Entry, Registry


@dataclass
class DatasetConfig:
    """The options every dataset has; each family's schema adds its own, so an option a
    dataset does not use is refused instead of ignored.

    ``limit`` caps every split; ``split_seed`` (default: the run's seed) fixes the
    train/val/test split.
    """

    name: str = MISSING
    limit: Optional[int] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: Optional[int] = None  # noqa: UP045

    def validate(self) -> None:
        require(self.limit is None or self.limit > 0, "limit", f"must be a positive integer or null, got {self.limit}")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            require(0.0 < value < 0.5, key, f"must be in (0, 0.5), got {value}")

    def read_with(self, tokenizer: str, model: str) -> DatasetConfig:
        """This data read with model ``model``'s own ``tokenizer`` (a ``tokenizer.json``):
        text data returns a copy that uses it; other data is returned as is (the model
        registry then refuses the pair, naming both)."""
        return self


def check_group(group: str | None) -> None:
    """``group`` (families without a sensitive attribute): null or ``label`` (class-wise groups)."""
    require(group in (None, "label"), "group", f"must be null or 'label', got {group!r}")


Builder = Callable[[Any, int], Splits]

DATASETS: Registry[Builder] = Registry("dataset", package="dq.data")


def register(name: str, *, schema: type, sensitive: tuple[str, ...] = ()) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder`` under ``name`` with its family's ``schema``
    and the sensitive attributes it offers (default first; empty for data without one,
    which may use ``group: label`` instead).

    Example::

        @register("adult", schema=TabularDatasetConfig, sensitive=("sex", "race"))
        def build_adult(cfg: TabularDatasetConfig, seed: int) -> Splits: ...
    """
    return DATASETS.register(name, schema=schema, sensitive=tuple(sensitive))


def names() -> list[str]:
    """The registered dataset names, sorted."""
    return DATASETS.names()


def get(name: str) -> Entry[Builder]:
    """The entry for ``name`` (DQUserError for an unknown name, listing the allowed ones)."""
    return DATASETS.get(name)


def dataset_config(name: str, **options: Any) -> Any:
    """The config of dataset ``name`` (its family's schema) with ``options``, e.g.
    ``dataset_config("adult", limit=100)``, for calling ``dq.data.build`` from Python."""
    schema = get(name).schema
    assert schema is not None
    return schema(name=name, **options)
