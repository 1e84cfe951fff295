"""Where one epoch's pass over the training batches stands: the running sums of its train
metrics and how many batches are done, plus the batch order it follows.

The loop keeps one ``EpochState`` per epoch. A run stopped between two batches
(pre-emption) saves it in last.pt, and a resumed run continues the same epoch from it:
the batch-order generator is set back to its state at the epoch's start (so the same
permutation is drawn), the batches already done are skipped, and the sums go on from
where they were, so the epoch's metrics come out bit for bit as if never stopped.

A batch skipped for a non-finite value (``trainer.nonfinite=skip_batch``) counts as done
and as skipped; its values stay out of the sums, so the epoch's means are over the
batches the optimizer stepped on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from dq import metric_keys as keys


@dataclass
class EpochState:
    order_state: torch.Tensor  # the batch generator's state when the epoch began
    batches_done: int = 0  # stepped and skipped batches alike: where a resumed epoch goes on
    skipped: int = 0  # batches skipped for a non-finite loss, term or gradient
    seen: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # term name -> Σ value·n, on the device
    correct: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # correct predictions, on the device
    seconds: float = 0.0  # training time spent in this epoch before a stop (times only)
    started: float = field(default_factory=time.perf_counter, repr=False)

    @classmethod
    def begin(cls, generator: torch.Generator, device: torch.device) -> EpochState:
        return cls(order_state=generator.get_state(), correct=torch.zeros((), device=device))

    def add(self, terms: dict[str, torch.Tensor], correct: torch.Tensor, n: int) -> None:
        """Add one batch of ``n`` examples: its term means (device tensors) and correct count."""
        self.batches_done += 1
        self.seen += n
        for name, value in terms.items():
            total = self.sums.get(name)
            if total is None:
                total = torch.zeros((), device=value.device)
            self.sums[name] = total + value.float() * n
        self.correct = self.correct + correct

    def skip(self) -> None:
        """Count one batch as done and skipped: nothing of it enters the sums."""
        self.batches_done += 1
        self.skipped += 1

    def running_loss(self) -> float:
        """The mean task loss so far (NaN while no batch has been stepped on)."""
        return float(self.sums["task"]) / self.seen if self.seen else math.nan

    def record(self) -> dict[str, float]:
        """``train/loss``, ``train/accuracy`` and ``train/<term>``: size-weighted means (one sync)."""
        if not self.seen:  # every batch so far was skipped
            return {keys.train(keys.LOSS): math.nan, keys.train(keys.ACCURACY): math.nan}
        record = {
            keys.train(keys.LOSS): self.running_loss(),
            keys.train(keys.ACCURACY): float(self.correct) / self.seen,
        }
        record.update(
            {keys.train(name): float(total) / self.seen for name, total in self.sums.items() if name != "task"}
        )
        return record

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (CPU), for last.pt."""
        return {
            "order_state": self.order_state,
            "batches_done": self.batches_done,
            "skipped": self.skipped,
            "seen": self.seen,
            "sums": {name: value.detach().cpu() for name, value in self.sums.items()},
            "correct": self.correct.detach().cpu(),
            "seconds": self.elapsed(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> EpochState:
        return cls(
            order_state=state["order_state"],
            batches_done=int(state["batches_done"]),
            skipped=int(state.get("skipped", 0)),  # absent in a last.pt written before skip_batch
            seen=int(state["seen"]),
            sums={name: value.to(device) for name, value in state["sums"].items()},
            correct=state["correct"].to(device),
            seconds=float(state["seconds"]),
        )
