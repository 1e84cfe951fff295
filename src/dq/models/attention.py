"""Transformer encoder classifier over image patches, tokens, series patches or tabular features.

Every input becomes a sequence of ``d_model`` tokens; a learned CLS token goes first,
learned positional embeddings are added, a pre-norm ``nn.TransformerEncoder`` mixes
them, and the CLS output (after a LayerNorm) is classified. Inputs whose length is not a
multiple of the patch size are zero-padded at the end (zero is the mean of normalised
pixels and standardised series), so every patch size works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.layers import Normalize, ceil_div, require_shape, require_vocab
from dq.models.registry import PRUNE_GLOBAL, Capabilities, register

# Global magnitude prunes the attention's in-projection and its Linear layers; structured
# pruning (torch-pruning) is supported for the plain MLPs and CNNs only.
PRUNED_GLOBALLY = Capabilities(prune=PRUNE_GLOBAL)


@dataclass
class AttentionConfig:
    """Transformer encoder over image patches, tokens, series patches or tabular features."""

    name: str = "attention"
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ff_dim: int = 128
    dropout: float = 0.1
    patch_size: int = 4
    series_patch: int = 10

    def validate(self) -> None:
        require(self.d_model > 0, "d_model", f"must be > 0, got {self.d_model}")
        require(self.heads > 0, "heads", f"must be > 0, got {self.heads}")
        require(
            self.d_model % self.heads == 0,
            "d_model",
            f"({self.d_model}) must be divisible by heads ({self.heads})",
        )
        require(self.layers > 0, "layers", f"must be > 0, got {self.layers}")
        require(self.ff_dim > 0, "ff_dim", f"must be > 0, got {self.ff_dim}")
        require(self.patch_size > 0, "patch_size", f"must be > 0, got {self.patch_size}")
        require(self.series_patch > 0, "series_patch", f"must be > 0, got {self.series_patch}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


class TransformerClassifier(nn.Module):
    """Shared body: ``tokens(x) → ([N, S, d], pad mask [N, S] or None) → CLS + encoder → Linear``.

    Subclasses only say how their input becomes tokens. ``positional=False`` leaves out
    positional embeddings where tokens already carry their identity (tabular features).
    """

    def __init__(self, cfg: AttentionConfig, num_tokens: int, num_classes: int, positional: bool = True) -> None:
        super().__init__()
        self.max_tokens = num_tokens
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.position = nn.Parameter(torch.zeros(1, num_tokens + 1, cfg.d_model)) if positional else None
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.heads,
            dim_feedforward=cfg.ff_dim,
            dropout=cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, num_classes)
        nn.init.trunc_normal_(self.cls, std=0.02)
        if self.position is not None:
            nn.init.trunc_normal_(self.position, std=0.02)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, pad_mask = self.tokens(x)
        n, length, _ = tokens.shape
        if length > self.max_tokens:
            raise ValueError(f"input gives {length} tokens but the model was built for at most {self.max_tokens}")
        tokens = torch.cat([self.cls.expand(n, -1, -1), tokens], dim=1)
        if self.position is not None:
            tokens = tokens + self.position[:, : length + 1]
        if pad_mask is not None:  # True = ignore; the CLS token is never masked
            pad_mask = torch.cat([pad_mask.new_zeros(n, 1), pad_mask], dim=1)
        encoded = self.encoder(self.dropout(tokens), src_key_padding_mask=pad_mask)
        return self.head(self.norm(encoded[:, 0]))


class ImagePatchTransformer(TransformerClassifier):
    """ViT-style: normalised ``[N, C, H, W]`` → non-overlapping ``p×p`` patches (Conv2d, stride p)."""

    def __init__(self, cfg: AttentionConfig, meta: DatasetMeta) -> None:
        channels, height, width = meta.input_shape
        p = cfg.patch_size
        super().__init__(cfg, ceil_div(height, p) * ceil_div(width, p), meta.num_classes)
        self.patch_size = p
        self.normalize = Normalize.from_meta(meta)
        self.patch = nn.Conv2d(channels, cfg.d_model, kernel_size=p, stride=p)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self.normalize(x)
        p = self.patch_size
        x = F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))  # right / bottom
        return self.patch(x).flatten(2).transpose(1, 2), None


class SeriesPatchTransformer(TransformerClassifier):
    """``[N, C, T]`` → non-overlapping windows of ``series_patch`` steps (Conv1d, stride = window)."""

    def __init__(self, cfg: AttentionConfig, meta: DatasetMeta) -> None:
        channels, steps = meta.input_shape
        super().__init__(cfg, ceil_div(steps, cfg.series_patch), meta.num_classes)
        self.patch_size = cfg.series_patch
        self.patch = nn.Conv1d(channels, cfg.d_model, kernel_size=cfg.series_patch, stride=cfg.series_patch)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = F.pad(x, (0, -x.shape[-1] % self.patch_size))
        return self.patch(x).transpose(1, 2), None


class TokenTransformer(TransformerClassifier):
    """Text: ids ``[N, L]`` right-padded with ``pad_index``; pad tokens are masked out of attention.

    ``embedding`` is public for captum's LayerIntegratedGradients.
    """

    def __init__(self, cfg: AttentionConfig, meta: DatasetMeta) -> None:
        super().__init__(cfg, meta.input_shape[0], meta.num_classes)
        self.pad_index = meta.pad_index
        self.embedding = nn.Embedding(len(meta.vocab), cfg.d_model, padding_idx=meta.pad_index)

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embedding(x), x == self.pad_index


class FeatureTransformer(TransformerClassifier):
    """FT-Transformer style (Gorishniy et al., 2021): feature ``j`` of ``[N, F]`` becomes
    ``x_j · w_j + b_j``; the per-feature ``w_j, b_j`` already identify the feature, so no
    positional embedding is added."""

    def __init__(self, cfg: AttentionConfig, meta: DatasetMeta) -> None:
        (features,) = meta.input_shape
        super().__init__(cfg, features, meta.num_classes, positional=False)
        bound = 1 / math.sqrt(cfg.d_model)
        self.value_weight = nn.Parameter(torch.empty(features, cfg.d_model).uniform_(-bound, bound))
        self.value_bias = nn.Parameter(torch.empty(features, cfg.d_model).uniform_(-bound, bound))

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x.unsqueeze(-1) * self.value_weight + self.value_bias, None


@register("attention", "image", schema=AttentionConfig, capabilities=PRUNED_GLOBALLY)
def build_image_transformer(cfg: AttentionConfig, meta: DatasetMeta) -> ImagePatchTransformer:
    require_shape(meta, 3, "[C, H, W]")
    return ImagePatchTransformer(cfg, meta)


@register("attention", "text", capabilities=PRUNED_GLOBALLY)
def build_token_transformer(cfg: AttentionConfig, meta: DatasetMeta) -> TokenTransformer:
    require_shape(meta, 1, "[L]")
    require_vocab(meta)
    return TokenTransformer(cfg, meta)


@register("attention", "series", capabilities=PRUNED_GLOBALLY)
def build_series_transformer(cfg: AttentionConfig, meta: DatasetMeta) -> SeriesPatchTransformer:
    require_shape(meta, 2, "[C, T]")
    return SeriesPatchTransformer(cfg, meta)


@register("attention", "tabular", capabilities=PRUNED_GLOBALLY)
def build_feature_transformer(cfg: AttentionConfig, meta: DatasetMeta) -> FeatureTransformer:
    require_shape(meta, 1, "[F]")
    return FeatureTransformer(cfg, meta)
