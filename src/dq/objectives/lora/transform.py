"""LoRA as a regularizer choice (``regularizer=[lora]``): a model transform, not a loss term.

Parameter efficiency costs nothing in the loss; it is the trainable parameter count,
reported as ``params/trainable`` and ``params/trainable_fraction``. This module registers
the ``regularizer.lora`` schema (``config``) and the one object that adapts a model for it:
``apply`` puts the ``init_from`` run's weights under the adapters (``pretrained``) and adds
the adapters (``layer``); ``finish`` merges them after training when ``merge`` is set.
The runner and ``dq.load_run`` make the same two calls.
"""

from __future__ import annotations

from torch import nn

from dq.data_records import DatasetMeta
from dq.objectives.lora.config import LoRAConfig
from dq.objectives.lora.layer import apply_lora, merge_lora
from dq.objectives.lora.pretrained import load_pretrained
from dq.objectives.registry import register_transform


class LoRATransform:
    """Adapters on a (possibly pretrained) frozen base; merged at the end when asked.

    Example::

        transform = LoRATransform(LoRAConfig(rank=4, init_from="outputs/default/<time>"))
        notes = transform.apply(model)      # base weights, adapters, freezing
        ...                                 # train
        model = transform.finish(model)     # merged when cfg.merge
    """

    name = "lora"

    def __init__(self, cfg: LoRAConfig) -> None:
        self.cfg = cfg

    def apply(self, model: nn.Module, *, restoring: bool = False) -> list[str]:
        """Base weights from ``init_from`` (skipped when ``restoring``: the run's own
        checkpoint holds base and adapters), then adapters and freezing."""
        notes = []
        if not restoring:
            if self.cfg.init_from is not None:  # into the plain base, before adapters wrap its layers
                notes.append(load_pretrained(model, self.cfg.init_from).describe())
            else:
                notes.append(
                    "LoRA base: the model as built, random unless pretrained (model=text_encoder); "
                    "set regularizer.lora.init_from=<run dir> to adapt a trained run"
                )
        notes.append(apply_lora(model, self.cfg).describe())
        return notes

    def finish(self, model: nn.Module) -> nn.Module:
        """The merged model when ``merge`` is set (checkpoints keep the adapters), else ``model``."""
        return merge_lora(model) if self.cfg.merge else model


@register_transform("lora", schema=LoRAConfig)
def build_lora(cfg: LoRAConfig, meta: DatasetMeta) -> LoRATransform:
    return LoRATransform(cfg)
