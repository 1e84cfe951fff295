"""Starting a model from a finished run's best weights (``regularizer.lora.init_from``).

The checkpoint's weights replace the fresh model's, except the input normalisation
(``Normalize`` buffers), which keeps the statistics of the data the model is built
for now. A classifier for another number of classes keeps its fresh ``head``. A
checkpoint of a LoRA run is folded into plain weights first (``fold_lora_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from dq.errors import DQUserError
from dq.models.layers import Normalize
from dq.objectives.lora.layer import LoRALayer, fold_lora_state
from dq.rundir.layout import BEST_CHECKPOINT, BEST_PT, checkpoint_dir
from dq.rundir.read import CorruptRunFile, read_checkpoint

WHERE = "regularizer.lora.init_from"


@dataclass
class PretrainedInfo:
    """What ``load_pretrained`` took from the checkpoint and what it left fresh."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    kept_normalize: list[str] = field(default_factory=list)
    fresh_head: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the console."""
        line = f"init_from {self.path}: {len(self.loaded)} tensors loaded"
        if self.kept_normalize:
            line += f"; kept this data's normalisation ({', '.join(self.kept_normalize)})"
        if self.fresh_head:
            line += f"; head shape differs, kept the fresh head ({', '.join(self.fresh_head)})"
        return line


def load_pretrained(model: nn.Module, run_dir: str | Path, where: str = WHERE) -> PretrainedInfo:
    """Load ``run_dir``'s checkpoints/best.pt (``weights_only=True``) into ``model``.

    Call it on the freshly built model, before ``apply_lora``. ``where`` names the
    setting in error messages.

    Raises:
        DQUserError: one line, when ``run_dir`` has no checkpoints/best.pt, or the
            checkpoint does not fit the model (missing or unexpected keys, or shapes that
            differ outside ``head.*``; the keys are named).
    """
    if any(isinstance(m, LoRALayer) for m in model.modules()):
        raise ValueError("load_pretrained expects the base model, before apply_lora")
    path = checkpoint_dir(Path(run_dir)) / BEST_CHECKPOINT
    if not path.is_file():
        raise DQUserError(f"{where}={run_dir}: no checkpoints/best.pt; point it at a finished run directory")
    try:
        state = read_checkpoint(Path(run_dir), BEST_PT, ("model",))["model"]
    except CorruptRunFile as error:  # a truncated or foreign file: dq.rundir.read says which
        raise DQUserError(f"{where}={run_dir}: {error}") from None
    state = fold_lora_state(state)

    own = model.state_dict()
    normalize = {
        f"{name}.{key}" if name else key
        for name, module in model.named_modules()
        if isinstance(module, Normalize)
        for key in module.state_dict()
    }
    info = PretrainedInfo(path=path, kept_normalize=sorted(normalize & own.keys()))
    missing = sorted(k for k in own.keys() - state.keys() if k not in normalize)
    unexpected = sorted(k for k in state.keys() - own.keys() if not _is_normalize_key(k))
    if missing or unexpected:
        raise DQUserError(
            f"{where}={run_dir}: the checkpoint does not fit this model; "
            f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unexpected) or 'none'}"
        )
    shared = [k for k in own if k in state and k not in normalize]
    mismatched = [k for k in shared if state[k].shape != own[k].shape]
    if any(not _in_head(k) for k in mismatched):
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched)
        raise DQUserError(f"{where}={run_dir}: checkpoint shapes differ from this model's: {shapes}")
    if mismatched:
        info.fresh_head = [k for k in shared if _in_head(k)]
    info.loaded = [k for k in shared if k not in info.fresh_head]
    model.load_state_dict({k: state[k] for k in info.loaded}, strict=False)
    return info


def _in_head(key: str) -> bool:
    return key.startswith("head.")


def _is_normalize_key(key: str) -> bool:
    # A checkpoint's Normalize buffers when this model has none (e.g. image pretraining
    # for a model on already standardised data) are not an architecture mismatch.
    return key.split(".")[-2:-1] == ["normalize"] and key.rsplit(".", 1)[-1] in ("mean", "std")
