"""Batches for the training loop.

Small datasets live on the training device as whole tensors and are batched by indexing
a seeded permutation: no per-sample Python, no host-to-device copy per batch. Data that
should not sit on the device goes through a DataLoader with pinned memory and
non-blocking copies on CUDA.

In a run on several processes (``trainer.devices``, DistributedDataParallel) every rank
draws the same permutation from the same generator (one draw per epoch, so the order is
seeded per epoch) and keeps its shard, ``order[rank::world]`` after the permutation is
padded to a multiple of ``world`` with its own first indices (DistributedSampler's rule:
fewer than ``world`` examples are seen twice, none is left out). Each rank's batch is
``batch_size / world`` examples, so the ranks' k-th batches together are exactly the k-th
batch of the single-process run on the same permutation (positions ``k·B .. k·B + B − 1``),
and DDP's averaged gradient is that batch's gradient.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from dq.data_records import Batch, Split, float_inputs


def _fields(split: Split) -> tuple[str, ...]:
    return tuple(name for name in ("x", "y", "group", "mask") if getattr(split, name) is not None)


def shard_size(n: int, world: int) -> int:
    """How many examples of ``n`` each of ``world`` ranks sees in an epoch."""
    return -(-n // world)


def shard_order(n: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's indices for the next epoch: one permutation drawn from ``generator`` (the
    same on every rank), padded to a multiple of ``world`` and taken every ``world``-th from
    ``rank``. With ``world == 1`` it is the permutation itself."""
    order = torch.randperm(n, generator=generator)
    if world == 1:
        return order
    pad = shard_size(n, world) * world - n
    return torch.cat([order, order[:pad]])[rank::world]


class ShardSampler(Sampler[int]):
    """``shard_order`` as a DataLoader sampler (the loader's batches then match the tensor path)."""

    def __init__(self, n: int, generator: torch.Generator, rank: int, world: int) -> None:
        self.n, self.generator, self.rank, self.world = n, generator, rank, world

    def __len__(self) -> int:
        return shard_size(self.n, self.world)

    def __iter__(self) -> Iterator[int]:
        return iter(shard_order(self.n, self.generator, self.rank, self.world).tolist())


class TensorBatches:
    """Shuffled batches of a split held on ``device``; the order comes from ``generator``.
    With ``world > 1``, this rank's shard in batches of ``batch_size // world``."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.split = split.to(device)
        self.batch_size = batch_size // world
        self.generator = generator
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return -(-shard_size(len(self.split), self.world) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = shard_order(len(self.split), self.generator, self.rank, self.world).to(self.split.y.device)
        for start in range(0, len(order), self.batch_size):
            yield self.split.batch(order[start : start + self.batch_size])


class LoaderBatches:
    """The same batches through a DataLoader, for data that should stay in host memory."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator,
        num_workers: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.names = _fields(split)
        self.device = device
        self.generator = generator  # the loader's shuffling draws from it
        on_cuda = device.type == "cuda"
        dataset = TensorDataset(*(getattr(split, name) for name in self.names))
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size // world,
            sampler=ShardSampler(len(dataset), generator, rank, world),
            generator=generator,  # the loader draws its worker seed from it, as with shuffle=True
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
            moved["x"] = float_inputs(moved["x"])  # after the copy: uint8 pixels cross as uint8
            yield Batch(**moved)


def train_batches(
    split: Split,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
    loader: str,
    num_workers: int,
    rank: int = 0,
    world: int = 1,
) -> TensorBatches | LoaderBatches:
    """This rank's training batches; ``batch_size`` is the global batch, split over ``world`` ranks."""
    if loader == "tensor":
        return TensorBatches(split, batch_size, device, generator, rank, world)
    return LoaderBatches(split, batch_size, device, generator, num_workers, rank, world)
