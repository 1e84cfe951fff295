"""A small word tokenizer and a vocabulary built from the training split only.

Example::

    >>> tokenize("It's GREAT, isn't it?!")
    ["it's", 'great', ',', "isn't", 'it', '?', '!']
    >>> vocab = Vocabulary.build([["a", "b", "a"]], min_freq=2, max_size=10)
    >>> vocab.tokens
    ('<pad>', '<unk>', 'a')
    >>> vocab.encode([["a", "b"], []], max_length=3).tolist()
    [[2, 1, 0], [1, 0, 0]]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

PAD, UNK = "<pad>", "<unk>"
PAD_INDEX, UNK_INDEX = 0, 1

# Words (letters/digits, with inner apostrophes: "isn't", "it's") or single punctuation marks.
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercased word and punctuation tokens of ``text``."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id: 0 is ``<pad>``, 1 is ``<unk>``, then the kept tokens by
    decreasing frequency (ties alphabetical, so the order is deterministic)."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], min_freq: int, max_size: int) -> Vocabulary:
        """Tokens seen at least ``min_freq`` times; at most ``max_size`` entries in all
        (``<pad>`` and ``<unk>`` included)."""
        counts = Counter(token for document in documents for token in document)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        return cls((PAD, UNK, *kept[: max(max_size - 2, 0)]))

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, document: Sequence[str]) -> list[int]:
        """Ids of ``document``'s tokens, unknown ones as ``UNK_INDEX``."""
        return [self.index.get(token, UNK_INDEX) for token in document]

    def encode(self, documents: Sequence[Sequence[str]], max_length: int) -> torch.Tensor:
        """Long tensor [N, max_length]: ids truncated to ``max_length`` and right-padded
        with ``PAD_INDEX``; an empty document becomes a single ``<unk>``, so every row has
        at least one real token."""
        out = np.full((len(documents), max_length), PAD_INDEX, dtype=np.int64)
        for row, document in enumerate(documents):
            ids = self.ids(document[:max_length]) or [UNK_INDEX]
            out[row, : len(ids)] = ids
        return torch.from_numpy(out)
