"""Where attributions live: the explained inputs, their baseline, and how to group them.

Float inputs (pixels, tabular columns, series steps) are attributed directly. Token ids
cannot be differentiated, so token data (the modality's ``tokens``: text) is attributed on
the output of ``model.embedding``: captum's layer methods hook that layer themselves, and
everything else (perturbation methods, the quality metrics) runs the model through
``EmbeddingForward``, which feeds given embeddings in place of the layer's output through
the modality's one embedding hook (dq.modalities.text) while the ids still decide the pad
mask and the packed lengths. A token's attribution is the sum over its embedding
dimensions. How inputs group into features (occlusion, LIME, Kernel SHAP) is the
modality's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dq.config.explain import ExplainConfig
from dq.data_records import DatasetMeta, InputStats, input_stats
from dq.explain.baselines import float_baseline
from dq.modalities import modality_of
from dq.modalities.text import embedding_layer, run_with_embedding

EXPLANATION = "an explanation"  # what perturbs the embedding, for the one-line error of a model without one


class EmbeddingForward:
    """``(embeddings [N, L, D], ids [N, L]) → logits``: the model with its embedding
    layer's output replaced by ``embeddings``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, embeddings: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return run_with_embedding(self.model, ids, lambda _output: embeddings, EXPLANATION)


@dataclass
class Space:
    """The explained examples as captum sees them.

    Attributes:
        model: the classifier (eval mode).
        forward: ``(inputs, *args) → logits``: the model itself, or ``EmbeddingForward``.
        inputs: float ``[N, ...]``: the examples, or their token embeddings ``[N, L, D]``.
        args: extra forward arguments (text: the token ids), else None.
        baselines: like ``inputs``.
        ids, baseline_ids: text only: the token ids and the pad-token baseline that
            captum's layer methods take.
        valid: bool, shaped like a reduced attribution: which positions count in the
            metrics (text: the non-pad tokens), else None (all).
        scale: typical size of an input value (std of the training inputs, or of the
            embedding weights), for the noise of infidelity and sensitivity.
        low, high: bounds that perturbed inputs are clamped to (images), else None.
    """

    meta: DatasetMeta
    model: nn.Module
    forward: nn.Module | EmbeddingForward
    inputs: torch.Tensor
    args: tuple[torch.Tensor, ...] | None
    baselines: torch.Tensor
    scale: float
    ids: torch.Tensor | None = None
    baseline_ids: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    low: float | None = None
    high: float | None = None

    @property
    def is_text(self) -> bool:
        return self.ids is not None

    def reduce(self, attributions: torch.Tensor) -> torch.Tensor:
        """One value per input element: per token for text (sum over the embedding; exactly
        0 on padding, which never enters the model: perturbation methods would otherwise
        leave float noise there)."""
        if not self.is_text:
            return attributions
        assert self.valid is not None
        return attributions.sum(dim=-1) * self.valid

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        if self.low is None or self.high is None:
            return x
        return x.clamp(self.low, self.high)

    # ------------------------------------------------------------------ perturbation layout
    def feature_masks(self, inputs: torch.Tensor, args: tuple[torch.Tensor, ...] | None) -> list[torch.Tensor]:
        """One feature-id tensor ``[1, ...]`` per example, ids from 0, for LIME / Kernel SHAP:
        a column per tabular feature, a superpixel per image patch, a window per series
        segment, a token per word (all padding together as one last feature)."""
        ids = None if args is None else args[0]
        return modality_of(self.meta).feature_groups(self.meta, inputs, ids)

    def occlusion_window(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(sliding window, strides) of one occlusion patch for a single example."""
        shape = tuple(int(s) for s in self.inputs.shape[1:])
        return modality_of(self.meta).occlusion_window(shape, self.meta)


def build_space(
    model: nn.Module, meta: DatasetMeta, x: torch.Tensor, train: InputStats | None, cfg: ExplainConfig
) -> Space:
    """The space for explaining ``model`` on examples ``x`` (on the model's device).

    ``train``: the training inputs' statistics (``dq.data_records.input_stats``), for the
    mean baseline and the noise scale of float inputs; token data needs none (its baseline
    and scale come from the embedding), so :func:`train_stats` gives None there."""
    if modality_of(meta).tokens:
        embedding = embedding_layer(model, EXPLANATION)
        with torch.no_grad():
            inputs = embedding(x).detach()
        weight = embedding.weight.detach()
        keep = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
        keep[meta.pad_index] = False
        baseline_ids = torch.full_like(x, meta.pad_index)
        return Space(
            meta=meta,
            model=model,
            forward=EmbeddingForward(model),
            inputs=inputs,
            args=(x,),
            baselines=torch.zeros_like(inputs),  # the pad token's embedding
            scale=float(weight[keep].std()),
            ids=x,
            baseline_ids=baseline_ids,
            valid=x != meta.pad_index,
        )
    if train is None:
        raise ValueError(f"explaining {meta.modality} data needs the training inputs' statistics")
    low, high = meta.valid_range if meta.valid_range is not None else (None, None)
    return Space(
        meta=meta,
        model=model,
        forward=model,
        inputs=x,
        args=None,
        baselines=float_baseline(cfg.baseline, x, train.mean, meta),
        scale=train.std or 1.0,
        low=low,
        high=high,
    )


def train_stats(meta: DatasetMeta, train_x: torch.Tensor) -> InputStats | None:
    """What :func:`build_space` needs of the training inputs ``train_x``: their statistics,
    read a chunk at a time (a compact image split is never converted whole), or None for
    token data. Compute it once per run: every rebuilt space shares it."""
    return None if modality_of(meta).tokens else input_stats(train_x)
