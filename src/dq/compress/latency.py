"""CPU latency of a model on one batch: the median of repeated timings after a warm-up.

The median, because a shared machine adds long outliers that a mean would report; the
warm-up, because the first calls pay for allocation and kernel selection. A slow model
gets fewer timed calls (at least ``MIN_REPEATS``) once ``BUDGET_S`` is spent, so timing
a large CNN on 256 examples stays a few seconds. The model runs
on a CPU copy when it lives elsewhere, under ``torch.inference_mode`` and in eval mode,
with the process's torch threads (``torch.get_num_threads()``, reported beside it).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from dq.data_records import float_inputs
from dq.inference import eval_mode

# (warm-up calls, timed calls) per batch size: small batches are cheap and noisy, so more.
REPEATS = {1: (5, 30), 256: (2, 10)}
# A slow model stops early: after MIN_REPEATS timed calls once BUDGET_S seconds are spent.
MIN_REPEATS = 3
BUDGET_S = 2.0


def on_cpu(model: nn.Module) -> nn.Module:
    """``model`` itself when it is on the CPU, else a CPU copy (the original stays put)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).to("cpu")


def batch_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` examples from ``x`` (stored inputs, repeated in order when it holds fewer)
    as the model takes them (``float_inputs``), on the CPU: only the examples timed are
    converted, never a whole compact split."""
    index = torch.arange(size) % x.shape[0]
    return float_inputs(x[index.to(x.device)].cpu())


def median_latency_ms(
    model: nn.Module, x: torch.Tensor, *, warmup: int, repeats: int, budget_s: float = BUDGET_S
) -> float:
    """Median wall time, in milliseconds, of ``model(x)`` over ``repeats`` calls on the CPU
    (fewer, but at least ``MIN_REPEATS``, once the timed calls took ``budget_s`` seconds)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    cpu_model = on_cpu(model)
    x = x.cpu()
    times: list[float] = []
    with eval_mode(cpu_model), torch.inference_mode():
        for _ in range(warmup):
            cpu_model(x)
        while len(times) < repeats and (len(times) < MIN_REPEATS or sum(times) < budget_s):
            began = time.perf_counter()
            cpu_model(x)
            times.append(time.perf_counter() - began)
    return 1000.0 * statistics.median(times)


def latencies(model: nn.Module, x: torch.Tensor, prefix: str) -> dict[str, float]:
    """``<prefix>latency_ms@<batch>`` for each batch size of ``REPEATS``, on examples of
    ``x`` (a split's stored inputs: :func:`batch_of` converts each timed batch)."""
    cpu_model = on_cpu(model)  # one copy for every batch size
    return {
        f"{prefix}latency_ms@{size}": median_latency_ms(cpu_model, batch_of(x, size), warmup=warmup, repeats=repeats)
        for size, (warmup, repeats) in REPEATS.items()
    }
