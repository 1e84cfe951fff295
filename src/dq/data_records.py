"""The records every dataset produces and every other part consumes (a leaf: it imports
nothing else of dq, so any part can use them without loading another).

Data knows no model: a dataset builder turns a config into `Splits` (three `Split`s of
whole tensors) plus a `DatasetMeta` that tells models, metrics and explanations what the
tensors mean. Nothing here depends on how the data is trained on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

# The names dq.modalities registers its modalities under (one object each owns what differs).
ModalityName = Literal["image", "tabular", "text", "series"]


@dataclass(frozen=True)
class DatasetMeta:
    """What a model, a metric or an explainer needs to know about a dataset.

    Attributes:
        name: the config choice that built it (``mnist5k``, ``adult``...).
        modality: ``image`` (x: float [N, C, H, W] in ``valid_range``, or uint8 held
            compactly: see :func:`float_inputs`), ``tabular``
            (x: float [N, F]), ``text`` (x: long token ids [N, L], ``pad_index`` pads),
            ``series`` (x: float [N, C, T]).
        input_shape: shape of one example (without the batch dimension).
        num_classes: number of target classes.
        class_names: one name per class.
        feature_names: tabular column names (after one-hot encoding), else empty.
        sensitive_columns: indices of input columns that encode the sensitive attribute
            (tabular, when it is a model input), else empty.
        continuous_columns: indices of standardised continuous tabular columns (the
            ones an attack may move); one-hot columns are the rest.
        group_names: one name per sensitive group id, empty when the data has no groups.
        valid_range: (low, high) bounds of valid inputs (images: (0, 1)); None when
            inputs are unbounded or discrete.
        input_mean / input_std: per-channel statistics of the training split, for
            models that normalise inside (images keep raw [0, 1] inputs so attacks and
            explanations work in pixel space).
        vocab: token strings by id for text (index ``pad_index`` is padding), else empty.
        pad_index: the padding token id for text.
        has_mask: whether the splits carry annotation masks (``Split.mask``).
        train_group_counts: the training split's example count of each class in each group,
            ``train_group_counts[y][g]`` (after ``limit``; filled by ``dq.data.build``), the
            n_g of Group DRO's group adjustment; empty when the data has no groups.
    """

    name: str
    modality: ModalityName
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    sensitive_columns: tuple[int, ...] = ()
    continuous_columns: tuple[int, ...] = ()
    group_names: tuple[str, ...] = ()
    valid_range: tuple[float, float] | None = None
    input_mean: tuple[float, ...] = ()
    input_std: tuple[float, ...] = ()
    vocab: tuple[str, ...] = field(default=(), repr=False)
    pad_index: int = 0
    has_mask: bool = False
    train_group_counts: tuple[tuple[int, ...], ...] = ()

    @property
    def has_groups(self) -> bool:
        return len(self.group_names) > 0


# Images held compactly store 8-bit pixels as uint8; the pixel value is ``stored / 255``.
PIXEL_LEVELS = 255.0


def float_inputs(x: torch.Tensor) -> torch.Tensor:
    """The model's inputs from stored ones: uint8 pixels become float32 ``x / 255`` in
    [0, 1]; any other tensor is returned as it is.

    Large image datasets (cifar10, celeba, waterbirds) keep their splits as uint8, a quarter
    of float32's memory (CelebA at 64×64: 12,288 bytes per image, 2.5 GB in all), and every
    batch is converted here, on the device it was moved to (so a host-to-device copy moves
    uint8 too). Models normalise inside (``dq.models.layers.Normalize``), as for float data.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(PIXEL_LEVELS)
    return x


# Examples converted at a time where a whole split is read as model inputs (statistics):
# CelebA at 64×64 is 48 KiB per image as float32, so a chunk holds 48 MiB where the whole
# train split would hold 8 GB (statistics of 20,000 such images: ~100 MiB of peak memory
# chunked against ~940 MiB converted whole, in about the same time).
CHUNK_EXAMPLES = 1024


def float_chunks(x: torch.Tensor, size: int = CHUNK_EXAMPLES) -> Iterator[torch.Tensor]:
    """``x``'s model inputs (:func:`float_inputs`) in consecutive chunks of at most ``size``
    examples, in order: the way to read a whole split that may be stored compactly without
    ever holding all of it as float."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for first in range(0, x.shape[0], size):
        yield float_inputs(x[first : first + size])


@dataclass(frozen=True)
class InputStats:
    """Statistics of a split's model inputs.

    Attributes:
        mean: the mean example, float32 ``[1, *example shape]`` (on ``x``'s device).
        std: the standard deviation over every value of every example (Bessel-corrected,
            as ``torch.std``), nan for fewer than two values.
    """

    mean: torch.Tensor
    std: float


def input_stats(x: torch.Tensor, size: int = CHUNK_EXAMPLES) -> InputStats:
    """:class:`InputStats` of the model inputs of ``x`` [N, ...], read through
    :func:`float_chunks` (never the whole split as float at once). Each chunk's sums, mean
    and variance are torch's, merged across chunks in float64 (Chan et al.'s pairwise
    update of the variance), so the numbers are those of ``float_inputs(x).mean(0)`` and
    ``.std()`` up to float32 rounding, in about the same time (no float64 copy)."""
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    count, mean, m2 = 0, 0.0, 0.0  # values seen, their mean, sum of squared deviations
    for chunk in float_chunks(x, size):
        total += chunk.sum(dim=0).double()  # a sum of at most `size` values per element
        n = chunk.numel()
        chunk_mean, chunk_var = float(chunk.mean()), float(chunk.var(correction=0))
        delta = chunk_mean - mean
        mean += delta * n / (count + n)
        m2 += chunk_var * n + delta * delta * count * n / (count + n)
        count += n
    example_mean = (total / max(x.shape[0], 1)).to(torch.float32).unsqueeze(0)
    return InputStats(mean=example_mean, std=math.sqrt(m2 / (count - 1)) if count > 1 else math.nan)


@dataclass
class Split:
    """One split as whole tensors: ``x``, ``y`` and, where the data has them,
    ``group`` (long, one sensitive-group id per example) and ``mask`` (annotation mask
    shaped like ``x``, ``torch.bool``: a quarter of float32's memory; convert a batch's
    slice where numbers are needed)."""

    x: torch.Tensor
    y: torch.Tensor
    group: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor | slice) -> Split:
        """The examples at ``index`` (a slice or an index tensor), same fields."""
        return Split(
            x=self.x[index],
            y=self.y[index],
            group=None if self.group is None else self.group[index],
            mask=None if self.mask is None else self.mask[index],
        )

    def batch(self, index: torch.Tensor | slice) -> Split:
        """The examples at ``index`` as a model takes them: :meth:`subset` with ``x``
        through :func:`float_inputs` (``subset`` keeps the stored dtype, for ``limit``)."""
        part = self.subset(index)
        return replace(part, x=float_inputs(part.x))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Split:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(self, x=move(self.x), y=move(self.y), group=move(self.group), mask=move(self.mask))


# A batch is the same record over a few examples; the alias says which one a function expects.
Batch = Split


@dataclass
class Splits:
    """train / val / test splits of one dataset and the metadata that describes them."""

    train: Split
    val: Split
    test: Split
    meta: DatasetMeta

    def limited(self, limit: int | None) -> Splits:
        """Each split capped at ``limit`` examples (splits are already shuffled)."""
        if limit is None:
            return self
        return Splits(
            train=self.train.subset(slice(0, limit)),
            val=self.val.subset(slice(0, limit)),
            test=self.test.subset(slice(0, limit)),
            meta=self.meta,
        )
