"""Running a trained model without training it: eval mode that restores every module's
own mode afterwards, and logits of a whole split, batch by batch, without a graph."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from dq.data_records import Split, float_inputs
from dq.device import autocast


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; each module's train/eval mode restored after
    (a partly frozen model may hold modules in eval mode on purpose)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.train(training)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    split: Split,
    device: torch.device,
    batch_size: int = 512,
    amp: bool = False,
    amp_dtype: str = "bfloat16",
) -> torch.Tensor:
    """Float32 logits [N, K] on the CPU; the model's modes are restored afterwards."""
    if len(split) == 0:
        raise ValueError("cannot predict on an empty split")
    outputs = []
    with eval_mode(model):
        for start in range(0, len(split), batch_size):
            x = float_inputs(split.x[start : start + batch_size].to(device, non_blocking=device.type == "cuda"))
            with autocast(device, amp, amp_dtype):
                outputs.append(model(x).float().cpu())
    return torch.cat(outputs)
