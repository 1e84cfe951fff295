"""Datasets: one config choice -> whole-tensor train / val / test splits plus metadata.

    >>> from dq.config import DatasetConfig
    >>> splits = build(DatasetConfig(name="digits", limit=100), seed=0)
    >>> splits.train.x.shape, splits.meta.num_classes
    (torch.Size([100, 1, 8, 8]), 10)

Each family module (images, tabular, text, series) registers its builders with
``@register(name)``; :func:`build` looks the name up, checks the sensitive attribute and
``group``, runs the builder with the split seed and applies ``limit`` last. The same
config and seed give bitwise identical tensors.
"""

from __future__ import annotations

from dataclasses import replace

from dq.config import DatasetConfig
from dq.data import decoy, images, registry, series, tabular, text  # noqa: F401  (the families fill the registry)
from dq.data.types import Batch, DatasetMeta, Split, Splits
from dq.errors import DQUserError

__all__ = ["Batch", "DatasetMeta", "Split", "Splits", "available", "build"]


def available() -> list[str]:
    """The dataset names ``build`` accepts (the choices of ``conf/dataset/``)."""
    return registry.names()


def _resolve_sensitive(cfg: DatasetConfig, entry: registry.Entry) -> DatasetConfig:
    if cfg.sensitive is None:
        return replace(cfg, sensitive=entry.sensitive[0]) if entry.sensitive else cfg
    if cfg.sensitive not in entry.sensitive:
        allowed = ", ".join(entry.sensitive) if entry.sensitive else "none (use dataset.group=label for class groups)"
        raise DQUserError(f"dataset {entry.name} has no sensitive attribute {cfg.sensitive!r}; allowed: {allowed}")
    return cfg


def _label_groups(splits: Splits) -> Splits:
    """Each example's group is its class (``group: label``)."""

    def with_groups(split: Split) -> Split:
        return replace(split, group=split.y.clone())

    return Splits(
        train=with_groups(splits.train),
        val=with_groups(splits.val),
        test=with_groups(splits.test),
        meta=replace(splits.meta, group_names=splits.meta.class_names),
    )


def build(cfg: DatasetConfig, seed: int) -> Splits:
    """The splits of dataset ``cfg.name``.

    Args:
        cfg: the dataset config; ``cfg.split_seed`` (when set) overrides ``seed`` for the
            train/val/test split.
        seed: the run's seed.

    Raises:
        DQUserError: unknown name, a sensitive attribute the dataset lacks, ``group: label``
            on data that has sensitive groups, or a missing offline source.
    """
    entry = registry.get(cfg.name)
    cfg = _resolve_sensitive(cfg, entry)
    if cfg.group == "label" and entry.sensitive:
        raise DQUserError(
            f"dataset {entry.name} has sensitive groups ({', '.join(entry.sensitive)}); "
            "dataset.group=label is for data without one: choose them with dataset.sensitive"
        )
    split_seed = cfg.split_seed if cfg.split_seed is not None else seed
    splits = entry.builder(cfg, split_seed)
    if cfg.group == "label":
        splits = _label_groups(splits)
    return splits.limited(cfg.limit)
