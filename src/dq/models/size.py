"""Whether a model's sizes can be trained here at all, checked before it is allocated.

A size the schema accepts (``model.hidden=[99999999999]`` is a valid integer) would fail
when torch allocates it, with a traceback, after the data was built. The model is built
on torch's ``meta`` device first, which allocates nothing, and its parameter count is
weighed against the device's total memory.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from dq.data_records import DatasetMeta
from dq.errors import DQUserError, first_line
from dq.models.registry import build

# Training holds, per parameter, its float32 weight, its gradient and Adam's two moments.
BYTES_PER_PARAMETER = 16


def total_memory(device: torch.device) -> int:
    """The device's total memory in bytes: the GPU's, or this machine's physical memory."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(cfg: Any, meta: DatasetMeta, device: torch.device) -> None:
    """Refuse a model whose training state (``BYTES_PER_PARAMETER`` per parameter) exceeds
    ``device``'s total memory, or whose sizes torch cannot build at all.

    Raises:
        DQUserError: one line with the parameter count, the bytes it needs and the memory.
    """
    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in build(cfg, meta).parameters())
    except (RuntimeError, OverflowError) as error:  # a size past what torch can index
        raise DQUserError(f"model {cfg.name}: its sizes cannot be built ({first_line(str(error))})") from error
    need, have = parameters * BYTES_PER_PARAMETER, total_memory(device)
    if need > have:
        raise DQUserError(
            f"model {cfg.name} has {parameters:,} parameters: training needs about {need / 2**30:,.1f} GiB "
            f"({BYTES_PER_PARAMETER} bytes each: weight, gradient, Adam's two moments), more than the "
            f"{have / 2**30:,.1f} GiB of memory of {device.type}; choose smaller sizes (model.hidden, ...)"
        )
