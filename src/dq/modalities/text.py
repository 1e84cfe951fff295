"""Text: long token ids [L], right-padded with ``meta.pad_index``.

Token ids cannot be differentiated or moved a little, so attacks and attributions work on
the output of the model's embedding layer (``model.embedding``, an ``nn.Embedding`` built
with ``padding_idx``, so the pad token embeds to zeros) while the ids still decide the pad
mask and the packed lengths. ``embedding_layer`` and ``run_with_embedding`` are the one
hook both use: an attack adds its perturbation to the embeddings (dq.attacks.spaces), an
explanation feeds given embeddings in their place (dq.explain.space).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dq.config.explain import Baseline
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.modalities.base import Modality, Picture, register


@register
class Text(Modality):
    """Perturbed in the embedding (``tokens``); one token is one feature of an explanation,
    and the pad token (zero embedding) is its only baseline."""

    name = "text"
    picture = Picture.tokens
    baselines = (Baseline.zeros,)
    tokens = True

    def attack_bounds(self, meta: DatasetMeta) -> tuple[float, float] | None:
        return None  # embeddings are unbounded

    def feature_groups(self, meta: DatasetMeta, inputs: torch.Tensor, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """A feature per real token, all padding together as one last feature; each shaped
        like one example's embeddings [1, L, D]."""
        assert ids is not None
        masks = []
        for row in ids:
            real = row != meta.pad_index
            feature = torch.cumsum(real.long(), 0) - 1
            feature = torch.where(real, feature, real.sum())
            masks.append(feature.view(1, -1, 1).expand(1, -1, inputs.shape[-1]).contiguous())
        return masks

    def occlusion_window(self, shape: tuple[int, ...], meta: DatasetMeta) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """One token at a time, all of its embedding (``shape``: [L, D])."""
        return (1, shape[-1]), (1, shape[-1])


def embedding_layer(model: nn.Module, purpose: str) -> nn.Embedding:
    """``model.embedding``, where ``purpose`` ("an attack", "an explanation") perturbs text;
    a one-line DQUserError for a model without one."""
    layer = getattr(model, "embedding", None)
    if not isinstance(layer, nn.Embedding):
        raise DQUserError(
            f"{purpose} on text perturbs the output of model.embedding (an nn.Embedding); "
            f"{type(model).__name__} has none: use a token model (mlp, cnn, rnn, attention)"
        )
    return layer


def run_with_embedding(
    model: nn.Module, ids: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor], purpose: str
) -> torch.Tensor:
    """Logits of ``model`` on token ids ``ids`` [N, L] with its embedding layer's output
    ``e`` [N, L, D] replaced by ``edit(e)`` (a forward hook, removed afterwards)."""
    handle = embedding_layer(model, purpose).register_forward_hook(lambda _module, _args, output: edit(output))
    try:
        return model(ids)
    finally:
        handle.remove()
