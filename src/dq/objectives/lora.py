"""LoRA as a regularizer choice (``regularizer=[lora]``): a model transform, not a loss term.

Parameter efficiency costs nothing in the loss; it is the trainable parameter count,
reported as ``params/trainable`` and ``params/trainable_fraction``. This plugin holds the
``regularizer.lora`` schema and the one object that adapts a model for it: ``apply`` puts
the ``init_from`` run's weights under the adapters (dq.models.pretrained) and adds the
adapters (dq.models.lora); ``finish`` merges them after training when ``merge`` is set.
The runner and ``dq.load_run`` make the same two calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.lora import apply_lora, merge_lora
from dq.models.pretrained import load_pretrained
from dq.objectives.registry import register_transform


@dataclass
class LoRAConfig:
    """Low-rank adapters h = W₀x + (alpha/rank)·B·A·x on the Linear and Conv layers whose
    names match ``target``; every other parameter is frozen unless ``train`` names it.
    ``init_from`` is a finished run directory whose best checkpoint becomes the base."""

    rank: int = 4
    alpha: float = 8.0
    dropout: float = 0.0
    target: list[str] = field(default_factory=lambda: ["*"])
    train: list[str] = field(default_factory=lambda: ["head", "head.*"])
    init_from: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    merge: bool = False

    def validate(self) -> None:
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


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
                    "LoRA base: randomly initialised (set regularizer.lora.init_from=<run dir> to adapt a trained model)"
                )
        notes.append(apply_lora(model, self.cfg).describe())
        return notes

    def finish(self, model: nn.Module) -> nn.Module:
        """The merged model when ``merge`` is set (checkpoints keep the adapters), else ``model``."""
        return merge_lora(model) if self.cfg.merge else model


@register_transform("lora", schema=LoRAConfig)
def build_lora(cfg: LoRAConfig, meta: DatasetMeta) -> LoRATransform:
    return LoRATransform(cfg)
