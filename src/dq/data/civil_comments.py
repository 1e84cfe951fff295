"""CivilComments (WILDS' version) from a local root: is an online comment toxic? Groups
come from the identities the comment mentions.

WILDS' ``all_data_with_identities.csv`` (under ``<root>/civilcomments_v1.0``, the folder
``wilds.get_dataset("civilcomments", root_dir=<root>)`` uses) has one row per comment:
``comment_text``, ``split`` (train / val / test, the official partition), ``toxicity``
(the share of raters who found it toxic; label 1 when ≥ 0.5, as WILDS) and, per
identity, the share of raters who saw it mentioned (mentioned when ≥ 0.5, as WILDS).

Groups: one identity per run, chosen by ``dataset.sensitive`` (default ``black``), with
groups "not mentioned" / "mentioned". WILDS evaluates 16 groups, (identity, label) for
each of 8 identities, but those overlap (a comment can mention several identities), and
dq's groups are one id per example; one binary attribute per run keeps every group metric
and the fairness and Group DRO terms (which pair it with the label) well defined, and a
sweep over ``dataset.sensitive`` covers all eight.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from dq.config.validation import require
from dq.data import sources, splitting
from dq.data.cache import cached_arrays
from dq.data.registry import register
from dq.data.text import TextDatasetConfig, pack_texts, text_splits, unpack_texts
from dq.data_records import Splits
from dq.errors import DQUserError

FOLDER = "civilcomments_v1.0"
FILE = "all_data_with_identities.csv"
DOWNLOAD = (
    "https://worksheets.codalab.org/rest/bundles/0x8cd3de0634154aeaad2ee6eb96723c6e/contents/blob/ "
    "(WILDS' civilcomments_v1.0.tar.gz)"
)
# WILDS' identity columns (wilds/datasets/civilcomments_dataset.py, _identity_vars).
IDENTITIES = ("black", "male", "female", "LGBTQ", "christian", "muslim", "other_religions", "white")
SPLITS = ("train", "val", "test")
THRESHOLD = 0.5


@dataclass
class CivilCommentsConfig(TextDatasetConfig):
    """The text options, ``root`` (default ``~/.cache/dq``: the files under
    ``<root>/civilcomments_v1.0``) and ``sensitive`` (one of the eight identities).
    ``val_fraction`` / ``test_fraction`` are not used: the official partition is."""

    root: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)

    def validate(self) -> None:
        super().validate()
        require(self.sensitive_bins is None, "sensitive_bins", "must be null: the identities are mentioned or not")


@register("civil_comments", schema=CivilCommentsConfig, sensitive=IDENTITIES)
def build_civil_comments(cfg: CivilCommentsConfig, seed: int) -> Splits:
    """Toxic (toxicity ≥ 0.5) or not; group: whether ``cfg.sensitive`` is mentioned."""
    folder = Path(cfg.root or "~/.cache/dq").expanduser() / FOLDER
    sources.require_files("civil_comments", folder, (FILE,), DOWNLOAD)
    path = folder / FILE

    def parse() -> dict[str, np.ndarray]:
        import pandas as pd

        columns = ["comment_text", "split", "toxicity", *IDENTITIES]
        try:
            frame = pd.read_csv(path, usecols=columns)
        except ValueError as error:  # pandas names the missing columns
            raise DQUserError(f"dataset civil_comments: {path}: {error} (expected {', '.join(columns)})") from None
        unknown = sorted(set(frame["split"]) - set(SPLITS))
        if unknown:
            raise DQUserError(f"dataset civil_comments: {path} has split {unknown[0]!r}; allowed: {', '.join(SPLITS)}")
        mentioned = {name: (frame[name].fillna(0).to_numpy() >= THRESHOLD).astype(np.int64) for name in IDENTITIES}
        return {
            **pack_texts(frame["comment_text"].fillna("").astype(str).tolist()),
            "y": (frame["toxicity"].to_numpy() >= THRESHOLD).astype(np.int64),
            "split": frame["split"].map(SPLITS.index).to_numpy(dtype=np.int64),
            **mentioned,
        }

    arrays = cached_arrays(path, "civil_comments", parse)  # 448,000 comments: parse once
    sensitive = cfg.sensitive or IDENTITIES[0]
    return text_splits(
        "civil_comments",
        unpack_texts(arrays),
        arrays["y"],
        ("non_toxic", "toxic"),
        cfg,
        seed,
        group=arrays[sensitive],
        group_names=(f"no_{sensitive}", sensitive),
        parts=splitting.official(arrays["split"], seed, "civil_comments"),
    )
