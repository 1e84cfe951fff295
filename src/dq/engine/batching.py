"""Batches for the training loop.

Small datasets live on the training device as whole tensors and are batched by indexing
a seeded permutation: no per-sample Python, no host-to-device copy per batch. Data that
should not sit on the device goes through a DataLoader with pinned memory and
non-blocking copies on CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, TensorDataset

from dq.records import Batch, Split


def _fields(split: Split) -> tuple[str, ...]:
    return tuple(name for name in ("x", "y", "group", "mask") if getattr(split, name) is not None)


class TensorBatches:
    """Shuffled batches of a split held on ``device``; the order comes from ``generator``."""

    def __init__(self, split: Split, batch_size: int, device: torch.device, generator: torch.Generator) -> None:
        self.split = split.to(device)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(len(self.split), generator=self.generator).to(self.split.y.device)
        for start in range(0, len(order), self.batch_size):
            yield self.split.subset(order[start : start + self.batch_size])


class LoaderBatches:
    """The same batches through a DataLoader, for data that should stay in host memory."""

    def __init__(
        self, split: Split, batch_size: int, device: torch.device, generator: torch.Generator, num_workers: int = 0
    ) -> None:
        self.names = _fields(split)
        self.device = device
        self.generator = generator  # the loader's shuffling draws from it
        on_cuda = device.type == "cuda"
        dataset = TensorDataset(*(getattr(split, name) for name in self.names))
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            num_workers=num_workers,
            pin_memory=on_cuda,
            persistent_workers=num_workers > 0,
        )
        self.non_blocking = on_cuda

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for tensors in self.loader:
            moved = {
                name: t.to(self.device, non_blocking=self.non_blocking)
                for name, t in zip(self.names, tensors, strict=True)
            }
            yield Batch(**moved)


def train_batches(
    split: Split, batch_size: int, device: torch.device, generator: torch.Generator, loader: str, num_workers: int
) -> TensorBatches | LoaderBatches:
    if loader == "tensor":
        return TensorBatches(split, batch_size, device, generator)
    return LoaderBatches(split, batch_size, device, generator, num_workers)
