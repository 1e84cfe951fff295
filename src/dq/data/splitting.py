"""Seeded, stratified index splits and the bucketing of a numeric sensitive attribute.

Every function returns shuffled index arrays, so ``Splits.limited`` (which keeps the
first ``limit`` examples) takes a random subset. One ``RandomState`` seeded once per
call drives every draw, so the same seed gives the same indices on every machine.

The index arrays are kept in dq's array cache (dq.data.cache.cached_by_key), keyed by the
labels, fractions, seed and scikit-learn's version: a second run with the same data and
seed reads them back instead of importing scikit-learn (and with it scipy and pandas),
which costs more than the rest of the data loading together.

Fractions are of the data the split is carved from: with an official test split, val is
``val_fraction`` of the official train part; without one, test and val are
``test_fraction`` and ``val_fraction`` of the whole (so mnist5k with 0.1 / 0.1 gives
4,000 / 500 / 500).
"""

from __future__ import annotations

import importlib.metadata
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from dq.data.cache import cached_by_key
from dq.errors import DQUserError


def _rng(seed: int, stream: int) -> np.random.RandomState:
    """Independent streams of one seed (any int, negative ones included)."""
    return np.random.RandomState([seed % 2**32, stream])


def _count(fraction: float, n: int, n_classes: int) -> int:
    """Examples to carve: the fraction of ``n``, at least one per class (stratification)."""
    count = max(round(fraction * n), n_classes)
    if count > n - n_classes:
        raise DQUserError(f"cannot carve {fraction:g} of {n} examples with {n_classes} classes into two splits")
    return count


def _carve(index: np.ndarray, y: np.ndarray, count: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Stratified on ``y[index]``: (rest, carved), both shuffled."""
    from sklearn.model_selection import train_test_split  # heavy: only when a dataset is built

    rest, carved = train_test_split(index, test_size=count, stratify=y[index], random_state=rng)
    return np.asarray(rest), np.asarray(carved)


def _cached(kind: str, y: np.ndarray, fractions: tuple[float, ...], seed: int, draw: Callable[[], tuple]) -> tuple:
    """``draw()``'s index arrays, from the cache when the same labels, fractions, seed and
    scikit-learn version were split before."""
    try:
        sklearn = importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        sklearn = "none"
    y = np.ascontiguousarray(y)
    key = f"{kind}|{fractions!r}|{seed}|{y.dtype.str}|{y.shape}|sklearn {sklearn}|".encode() + y.tobytes()
    arrays = cached_by_key("split", key, lambda: {f"part{i}": part for i, part in enumerate(draw())})
    return tuple(arrays[f"part{i}"] for i in range(len(arrays)))


def train_val(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a source's official train part, stratified on ``y``."""
    y = np.asarray(y)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        count = _count(val_fraction, len(y), len(np.unique(y)))
        return _carve(np.arange(len(y)), y, count, _rng(seed, 0))

    return _cached("train_val", y, (val_fraction,), seed, draw)  # type: ignore[return-value]


def train_val_test(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test) of a source without a test split, stratified on ``y``;
    both fractions are of the whole."""
    y = np.asarray(y)

    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = _rng(seed, 0)
        n_classes = len(np.unique(y))
        test_count = _count(test_fraction, len(y), n_classes)
        val_count = _count(val_fraction, len(y), n_classes)
        rest, test = _carve(np.arange(len(y)), y, test_count, rng)
        train, val = _carve(rest, y, val_count, rng)
        return train, val, test

    return _cached("train_val_test", y, (val_fraction, test_fraction), seed, draw)  # type: ignore[return-value]


def shuffled(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)``: the order of an official test split."""
    return _rng(seed, 1).permutation(n)


def official(split_ids: np.ndarray, seed: int, dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test) of a source whose every row names its split (0, 1, 2,
    as CelebA's partition file and WILDS' metadata do), each part in a seeded order.

    Raises:
        DQUserError: when a part is empty.
    """
    split_ids = np.asarray(split_ids)
    parts = []
    for part, name in enumerate(("train", "val", "test")):
        index = np.flatnonzero(split_ids == part)
        if len(index) == 0:
            raise DQUserError(
                f"dataset {dataset}: its split column gives no {name} rows (expected ids 0, 1, 2 = train, val, test)"
            )
        parts.append(index[_rng(seed, 1 + part).permutation(len(index))])
    return parts[0], parts[1], parts[2]


def bucketize(values: np.ndarray, bins: Sequence[float], attribute: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Group ids and names for a numeric attribute cut at ``bins``.

    ``bins=[35, 55]`` gives ids 0, 1, 2 for ``x < 35``, ``35 <= x < 55``, ``x >= 55``,
    named ``<35``, ``35-54``, ``>=55`` (integer edges) or ``<a``, ``[a, b)``, ``>=b``.

    Raises:
        DQUserError: when ``bins`` is empty or not strictly increasing.
    """
    edges = [float(b) for b in bins]
    if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
        raise DQUserError(
            f"dataset.sensitive_bins for {attribute} must be a non-empty, strictly increasing list, got {list(bins)}"
        )
    ids = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.float64), side="right")
    integral = all(b.is_integer() for b in edges)

    def fmt(b: float) -> str:
        return f"{int(b)}" if integral else f"{b:g}"

    names = [f"<{fmt(edges[0])}"]
    for low, high in itertools.pairwise(edges):
        if integral:
            names.append(fmt(low) if high - low == 1 else f"{fmt(low)}-{int(high) - 1}")
        else:
            names.append(f"[{fmt(low)}, {fmt(high)})")
    names.append(f">={fmt(edges[-1])}")
    return ids.astype(np.int64), tuple(names)
