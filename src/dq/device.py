"""Where a run computes: device choice, thread count, mixed precision and seeding."""

from __future__ import annotations

import random
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from dq.errors import DQUserError


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a user error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise DQUserError("trainer.device=cuda but no CUDA device is available; allowed here: auto, cpu")
    return torch.device(choice)


def set_threads(num_threads: int) -> None:
    """One thread by default: on small models two threads were measured ~10× slower on 2 cores."""
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool, dtype: str) -> AbstractContextManager:
    """Mixed precision on CUDA only; on CPU this is a no-op (CPU autocast does not pay off here)."""
    if not enabled or device.type != "cuda":
        return nullcontext()
    return torch.autocast(device_type="cuda", dtype=getattr(torch, dtype))


def uses_amp(device: torch.device, enabled: bool) -> bool:
    return enabled and device.type == "cuda"
