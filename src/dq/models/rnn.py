"""Recurrent classifier (LSTM or GRU) over tokens, series time steps or image rows.

Every input becomes a batch-first sequence of step features ``[N, T, D]``; the last
hidden state of the top layer (both directions when bidirectional) feeds a linear
classifier. Text is packed by its non-pad length, so padding never enters the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.models.layers import Normalize, require_shape, require_vocab
from dq.models.registry import register


class RecurrentCell(StrEnum):
    lstm = "lstm"
    gru = "gru"


@dataclass
class RNNConfig:
    """Recurrent network: tokens (text), time steps (series) or image rows."""

    name: str = "rnn"
    cell: RecurrentCell = RecurrentCell.lstm
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    embedding_dim: int = 64
    dropout: float = 0.1

    def validate(self) -> None:
        require(self.hidden_size > 0, "hidden_size", f"must be > 0, got {self.hidden_size}")
        require(self.num_layers > 0, "num_layers", f"must be > 0, got {self.num_layers}")
        require(self.embedding_dim > 0, "embedding_dim", f"must be > 0, got {self.embedding_dim}")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


_CELLS: dict[RecurrentCell, type[nn.LSTM] | type[nn.GRU]] = {RecurrentCell.lstm: nn.LSTM, RecurrentCell.gru: nn.GRU}


class RecurrentClassifier(nn.Module):
    """Shared body: ``steps(x) → (features [N, T, D], lengths or None) → RNN → last state → Linear``.

    Subclasses only say how their input becomes steps.
    """

    def __init__(self, cfg: RNNConfig, input_size: int, num_classes: int) -> None:
        super().__init__()
        self.rnn = _CELLS[RecurrentCell(cfg.cell)](
            input_size,
            cfg.hidden_size,
            num_layers=cfg.num_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            # PyTorch applies this between stacked layers only (and warns for one layer).
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size * (2 if cfg.bidirectional else 1), num_classes)

    def steps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, lengths = self.steps(x)
        if lengths is not None:
            # pack_padded_sequence wants lengths on the CPU; unsorted batches are fine.
            features = pack_padded_sequence(features, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(features)
        if isinstance(hidden, tuple):  # LSTM returns (h_n, c_n)
            hidden = hidden[0]
        # h_n: [layers * directions, N, H]; the top layer's directions are the last ones.
        directions = 2 if self.rnn.bidirectional else 1
        last = torch.cat(list(hidden[-directions:]), dim=-1)
        return self.head(self.dropout(last))


class TokenRNN(RecurrentClassifier):
    """Text: token ids ``[N, L]`` right-padded with ``pad_index`` → embeddings, packed by length.

    ``embedding`` is public so that attribution (captum's LayerIntegratedGradients) can
    hook it: token ids themselves cannot be differentiated.
    """

    def __init__(self, cfg: RNNConfig, vocab_size: int, pad_index: int, num_classes: int) -> None:
        super().__init__(cfg, cfg.embedding_dim, num_classes)
        self.pad_index = pad_index
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_index)

    def steps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # An all-pad row still needs one step; its pad embedding is zero.
        lengths = (x != self.pad_index).sum(dim=1).clamp(min=1)
        return self.embedding(x), lengths


class SeriesRNN(RecurrentClassifier):
    """Series ``[N, C, T]`` → ``T`` steps of ``C`` channels (already standardised)."""

    def steps(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x.transpose(1, 2), None


class ImageRowRNN(RecurrentClassifier):
    """Image ``[N, C, H, W]`` → normalised, then ``H`` steps of one row (``C·W`` values) each."""

    def __init__(self, cfg: RNNConfig, meta: DatasetMeta) -> None:
        channels, _, width = meta.input_shape
        super().__init__(cfg, channels * width, meta.num_classes)
        self.normalize = Normalize.from_meta(meta)

    def steps(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self.normalize(x)
        return x.permute(0, 2, 1, 3).flatten(2), None


@register("rnn", "text", schema=RNNConfig)
def build_token_rnn(cfg: RNNConfig, meta: DatasetMeta) -> TokenRNN:
    require_shape(meta, 1, "[L]")
    return TokenRNN(cfg, require_vocab(meta), meta.pad_index, meta.num_classes)


@register("rnn", "series")
def build_series_rnn(cfg: RNNConfig, meta: DatasetMeta) -> SeriesRNN:
    channels, _ = require_shape(meta, 2, "[C, T]")
    return SeriesRNN(cfg, channels, meta.num_classes)


@register("rnn", "image")
def build_image_rnn(cfg: RNNConfig, meta: DatasetMeta) -> ImageRowRNN:
    require_shape(meta, 3, "[C, H, W]")
    return ImageRowRNN(cfg, meta)
