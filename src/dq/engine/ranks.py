"""What the training loop needs to know about the other processes of one run.

A run on several processes (``trainer.devices=N`` or ``torchrun``) trains one model with
DistributedDataParallel: each rank takes its shard of every epoch (dq.engine.batching) and
DDP averages the gradients in the backward pass. Everything else the loop decides, it
decides once, on rank 0, and tells the others, so no decision can differ between ranks:

- validation and the objective's end-of-epoch hook run on rank 0 on the whole validation
  split (exact, and no harder than one process); the record and the objective's state are
  broadcast, and every rank makes the same early-stopping and scheduler step from them;
- after each backward pass a one-flag all-reduce says whether any rank met a non-finite
  value, and after each step another whether any got a stop signal, so all ranks skip,
  stop or go on together;
- an epoch's train metrics are the sums over all ranks (one all-reduce per epoch).

``Ranks.single()`` is the one-process run: every method is then a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dq.engine.epoch_state import EpochState


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @classmethod
    def single(cls) -> Ranks:
        return cls()

    @property
    def main(self) -> bool:
        """Rank 0: the one process that validates and writes files."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module the objective trains through: DDP around ``model`` (which keeps the
        plain state dict for checkpoints), or ``model`` itself for one process."""
        if not self.several:
            return model
        ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        return _Parallel(model, device_ids=ids)

    def any_flags(self, *flags: bool, device: torch.device) -> tuple[bool, ...]:
        """Each flag, true when it is true on any rank (one all-reduce)."""
        if not self.several:
            return flags
        values = torch.tensor([float(flag) for flag in flags], device=device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled; for small things such as a record)."""
        if not self.several:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_state(self, state: EpochState, device: torch.device) -> None:
        """Replace this rank's epoch sums (examples seen, correct, each term) by their sums
        over all ranks, in place; batch counts stay per rank (they are equal)."""
        if not self.several:
            return
        names = sorted(state.sums)
        values = torch.stack(
            [torch.tensor(float(state.seen), device=device), state.correct.to(device).float()]
            + [state.sums[name].to(device).float() for name in names]
        )
        dist.all_reduce(values)
        state.seen = round(values[0].item())
        state.correct = values[1]
        state.sums = {name: values[2 + i] for i, name in enumerate(names)}


class _Parallel(DistributedDataParallel):
    """DDP that lets a term reach the wrapped model's own attributes (``model.embedding``,
    which a text attack hooks), as it would on one process."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)
