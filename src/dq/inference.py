"""Logits of a whole split in eval mode, batch by batch, without building a graph."""

from __future__ import annotations

import torch
from torch import nn

from dq.data.types import Split
from dq.device import autocast


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    split: Split,
    device: torch.device,
    batch_size: int = 512,
    amp: bool = False,
    amp_dtype: str = "bfloat16",
) -> torch.Tensor:
    """Float32 logits [N, K] on the CPU; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for start in range(0, len(split), batch_size):
            x = split.x[start : start + batch_size].to(device, non_blocking=device.type == "cuda")
            with autocast(device, amp, amp_dtype):
                outputs.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("cannot predict on an empty split")
    return torch.cat(outputs)
