"""Where an attack's perturbation lives: the input, or the output of a token model's embedding.

- ``InputSpace`` (image, tabular, series): ``delta`` is added to the input ``x``; one ε-ball
  per example; clipped to the range and masked to the inputs that the data's modality
  lets move (``Modality.attack_bounds`` / ``attack_mask``: on tabular data only the
  continuous columns move).
- ``EmbeddingSpace`` (a modality of ``tokens``, text): token ids are discrete, so ``delta``
  [N, L, D] is added to the output of ``model.embedding`` (an ``nn.Embedding``) by the
  modality's one embedding hook (dq.modalities.text), as in Miyato, Dai &
  Goodfellow 2017, "Adversarial Training Methods for Semi-Supervised Text Classification"
  (https://arxiv.org/abs/1605.07725). Padding positions (token == ``meta.pad_index``) never
  move. ε is measured per token in the raw embedding space: under ``norm=linf`` every
  coordinate of every token's perturbation vector satisfies |δ_tj| ≤ ε; under ``norm=l2``
  every token's perturbation vector satisfies ‖δ_t‖₂ ≤ ε (the L2 step normalises each
  token's gradient, the uniform start is uniform in each token's ball). This differs from
  the paper in two ways, on purpose: the paper bounds the L2 norm of the *whole sequence's*
  concatenated perturbation by ε (so a longer text gets less per word; per-token ε is the
  same for every length and matches how an image's L∞ ball bounds each pixel), and it
  first normalises the embeddings to zero mean and unit variance; here ε is in the units
  of the model's own embedding vectors (``nn.Embedding`` starts at N(0, 1) per coordinate).
  The paper's attack is one L2 step (FGM); here the same PGD as for images runs (steps,
  step size, random start), only the perturbed tensor differs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import torch
from torch import nn

from dq.data_records import DatasetMeta
from dq.modalities import modality_of
from dq.modalities.text import embedding_layer, run_with_embedding

ATTACK = "an attack"  # what perturbs the embedding, for the one-line error of a model without one


class Ball(StrEnum):
    """What one ε-ball covers: a whole example, or each token's embedding vector."""

    example = "example"
    token = "token"


class AttackSpace(Protocol):
    """The tensor an attack perturbs and the rules for moving it."""

    bounds: tuple[float, float] | None
    ball: Ball

    def point(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The clean value of the perturbed tensor (detached)."""
        ...

    def mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """1 where the perturbation may be non-zero, 0 where it stays 0; None: everywhere."""
        ...

    def forward(self, model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Logits of ``model`` on ``x`` with the perturbed tensor moved by ``delta``."""
        ...


class InputSpace:
    """``delta`` is added to the input; ``bounds`` clip ``x + delta``; ``feature_mask``
    [1, *input_shape] (or None) says which inputs move."""

    ball = Ball.example

    def __init__(self, bounds: tuple[float, float] | None, feature_mask: torch.Tensor | None = None) -> None:
        self.bounds = bounds
        self._masks = {} if feature_mask is None else {feature_mask.device: feature_mask}

    def point(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    def mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """The feature mask on ``x``'s device (copied there once)."""
        if not self._masks:
            return None
        if x.device not in self._masks:
            self._masks[x.device] = next(iter(self._masks.values())).to(x.device)
        return self._masks[x.device]

    def forward(self, model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return model(x + delta)


class EmbeddingSpace:
    """``delta`` [N, L, D] is added to ``model.embedding(x)`` by a forward hook; padding
    positions (``x == pad_index``) never move; one ε-ball per token; no bounds."""

    ball = Ball.token
    bounds = None

    def __init__(self, pad_index: int) -> None:
        self.pad_index = pad_index

    def point(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return embedding_layer(model, ATTACK)(x).detach()

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return (x != self.pad_index).unsqueeze(-1).float()

    def forward(self, model: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        def add_delta(output: torch.Tensor) -> torch.Tensor:
            if output.shape != delta.shape:
                raise ValueError(
                    f"embedding output {tuple(output.shape)} does not match the perturbation {tuple(delta.shape)}"
                )
            return output + delta.to(output.dtype)

        return run_with_embedding(model, x, add_delta, ATTACK)


def attack_space(meta: DatasetMeta) -> AttackSpace:
    """The embedding output for token data; the input (with its modality's bounds and
    mask) otherwise. Raises DQUserError for tabular data without continuous columns."""
    modality = modality_of(meta)
    if modality.tokens:
        return EmbeddingSpace(meta.pad_index)
    return InputSpace(modality.attack_bounds(meta), modality.attack_mask(meta))
