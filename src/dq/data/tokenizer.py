"""How text becomes token ids: dq's small word tokenizer with a vocabulary built from the
training split only (``word_ids``), or a pretrained model's own tokenizer read from its
``tokenizer.json`` (``pretrained_ids``; the model chooses it, see
``dq.models.registry.Capabilities.tokenizer``).

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
from pathlib import Path

import numpy as np
import torch

from dq.errors import DQUserError

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


@dataclass(frozen=True)
class Encoded:
    """Texts as token ids: ``ids`` [N, max_length], the token strings by id and the pad id."""

    ids: torch.Tensor
    tokens: tuple[str, ...]
    pad_index: int


def word_ids(texts: Sequence[str], fit: Sequence[int], min_freq: int, max_size: int, max_length: int) -> Encoded:
    """dq's word tokenizer: ids over a vocabulary of the texts at ``fit`` (the train split)."""
    documents = [tokenize(text) for text in texts]
    vocab = Vocabulary.build((documents[i] for i in fit), min_freq, max_size)
    return Encoded(vocab.encode(documents, max_length), vocab.tokens, PAD_INDEX)


def pretrained_ids(texts: Sequence[str], path: str, max_length: int) -> Encoded:
    """A pretrained model's own tokenizer (``path``: a Hugging Face ``tokenizer.json``):
    its special tokens ([CLS] … [SEP] for BERT), cut to ``max_length`` and right-padded
    with its pad token. Its vocabulary is fixed, so no split is needed to build it."""
    from tokenizers import Tokenizer  # only for a pretrained model's text

    if not Path(path).is_file():
        raise DQUserError(f"dataset.tokenizer={path}: no such file (a Hugging Face tokenizer.json)")
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as error:  # the Rust side raises plain Exception for an unreadable file
        raise DQUserError(
            f"dataset.tokenizer={path}: not a Hugging Face tokenizer.json ({str(error).splitlines()[0]})"
        ) from None
    pad = tokenizer.padding  # the file's own padding settings name its pad token
    pad_index = int(pad["pad_id"]) if pad else tokenizer.token_to_id("[PAD]")
    if pad_index is None:
        raise DQUserError(f"dataset.tokenizer={path}: the tokenizer names no pad token")
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=pad_index, pad_token=tokenizer.id_to_token(pad_index))
    ids = torch.tensor([encoding.ids for encoding in tokenizer.encode_batch(list(texts))], dtype=torch.long)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    return Encoded(ids.reshape(len(texts), max_length), tuple(tokens), pad_index)
