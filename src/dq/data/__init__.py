"""Datasets: one config choice -> whole-tensor train / val / test splits plus metadata.

    >>> from dq.data.registry import dataset_config
    >>> splits = build(dataset_config("digits", limit=100), seed=0)
    >>> splits.train.x.shape, splits.meta.num_classes
    (torch.Size([100, 1, 8, 8]), 10)

Each family module (images, tabular, text, series, decoy) registers its builders and its
config schema with ``@register(name, schema=...)``; the registry imports the family
modules on first lookup, so importing this package loads none of them (nor pandas or
scikit-learn). :func:`build` looks the name up, checks the sensitive attribute and
``group``, runs the builder with the split seed, applies ``limit`` and, for data with
groups, counts the training split's examples per class and group
(``meta.train_group_counts``). The same config and seed give bitwise identical tensors.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from dq.data import registry
from dq.data.registry import DatasetConfig
from dq.data_records import Split, Splits
from dq.errors import DQUserError
from dq.registry import Entry

__all__ = ["available", "build"]


def available() -> list[str]:
    """The dataset names ``build`` accepts (the choices of ``conf/dataset/``)."""
    return registry.names()


def _resolve_sensitive(cfg: Any, entry: Entry) -> Any:
    sensitive: tuple[str, ...] = entry.info["sensitive"]
    if not hasattr(cfg, "sensitive"):  # a family without sensitive attributes
        return cfg
    if cfg.sensitive is None:
        return replace(cfg, sensitive=sensitive[0]) if sensitive else cfg
    if cfg.sensitive not in sensitive:
        allowed = ", ".join(sensitive) if sensitive else "none (use dataset.group=label for class groups)"
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
    sensitive: tuple[str, ...] = entry.info["sensitive"]
    cfg = _resolve_sensitive(cfg, entry)
    group = getattr(cfg, "group", None)
    if group == "label" and sensitive:
        raise DQUserError(
            f"dataset {entry.name} has sensitive groups ({', '.join(sensitive)}); "
            "dataset.group=label is for data without one: choose them with dataset.sensitive"
        )
    split_seed = cfg.split_seed if cfg.split_seed is not None else seed
    splits = entry.value(cfg, split_seed)
    if group == "label":
        splits = _label_groups(splits)
    return _with_train_group_counts(splits.limited(cfg.limit))


def _with_train_group_counts(splits: Splits) -> Splits:
    """``splits`` whose meta holds the train split's count per (class, group): the one place
    the counts are taken, after ``limit``, so they are those of the examples trained on."""
    meta, train = splits.meta, splits.train
    if not meta.has_groups or train.group is None:
        return splits
    groups = len(meta.group_names)
    flat = torch.bincount(train.y * groups + train.group, minlength=meta.num_classes * groups)
    counts = tuple(tuple(row) for row in flat.view(meta.num_classes, groups).tolist())
    return replace(splits, meta=replace(meta, train_group_counts=counts))
