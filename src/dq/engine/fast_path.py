"""``trainer.compile`` and ``trainer.channels_last``: the fast path, off by default.

Both act on the model once, before training, and leave its state_dict keys as they are, so
checkpoints, resume, LoRA and ``load_run`` see the same model as without them:

- ``channels_last``: the model's 4-D weights are stored channels-last (NHWC) and a forward
  pre-hook hands it its image inputs channels-last, for training, validation, evaluation,
  attacks and explanations alike. For the models that declare it where they register
  (``Capabilities.channels_last``: ``model=cnn`` on image data).
- ``compile``: ``nn.Module.compile()`` (torch.compile in place: the module's ``forward`` is
  compiled on its first call, the module itself is not wrapped, so no ``_orig_mod.`` key
  prefix). Compiling costs seconds to minutes on the first batch (and again when a new
  input shape arrives: the last, smaller batch, validation's batch size); docs/evidence/speed.md
  says where it pays.
"""

from __future__ import annotations

import torch
from torch import nn

from dq.config.trainer import TrainerConfig
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.models.registry import capabilities, capable


def check_fast_path(trainer: TrainerConfig, model_name: str, meta: DatasetMeta) -> None:
    """Refuse ``channels_last`` where it has no meaning (no 4-D image batches), and
    ``compile`` on several processes (a compiled module under DistributedDataParallel is
    untested here: refused rather than trusted)."""
    if trainer.compile and trainer.devices > 1:
        raise DQUserError(
            f"trainer.compile=true is not supported with trainer.devices={trainer.devices} (several processes); "
            "set trainer.compile=false or trainer.devices=1"
        )
    if trainer.channels_last and not capabilities(model_name, meta).channels_last:
        raise DQUserError(
            f"trainer.channels_last applies to {capable(lambda can: can.channels_last)}, not model={model_name} "
            f"on {meta.modality} data ({meta.name}); set trainer.channels_last=false"
        )


def _channels_last_inputs(module: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x, *rest)


def apply_fast_path(model: nn.Module, trainer: TrainerConfig) -> list[str]:
    """Put ``model`` on the fast path that ``trainer`` asks for, in place; returns one note
    per lever switched on (printed with the run's summary)."""
    notes = []
    if trainer.channels_last:
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_channels_last_inputs)
        notes.append("channels_last: weights and image inputs in NHWC memory format")
    if trainer.compile:
        model.compile()
        notes.append("compile: torch.compile on the model's forward (the first batches pay the compilation)")
    return notes
