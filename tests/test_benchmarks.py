"""Standard benchmarks from a local root (cifar10, celeba, waterbirds, civil_comments): each
loader reads tiny files written in the published on-disk format (here, or in
benchmark_files where other tests need them too), and gives back what was written
(pixels, labels, groups, the official splits); a missing root is one line; images are
held as uint8 and every batch a model sees is float."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dq
from benchmark_files import WATERBIRDS_ROWS, colour, write_jpeg, write_waterbirds
from dq import data
from dq.data import civil_comments, group_images, images
from dq.data.registry import dataset_config
from dq.data_records import Split, float_inputs
from dq.engine.batching import LoaderBatches, TensorBatches
from dq.errors import DQUserError


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded images and parsed CSVs go to a cache of this test's own."""
    monkeypatch.setenv("DQ_CACHE_DIR", str(tmp_path / "cache"))


def written(x: torch.Tensor, count: int) -> list[int]:
    """The index (of ``count`` written) of each image of ``x`` (uint8 [N, 3, H, W]), told by
    its colour; every pixel within 3 levels of it."""
    assert x.dtype == torch.uint8  # held compactly
    colours = torch.tensor([colour(i) for i in range(count)], dtype=torch.float32)
    found = []
    for image in x.float():
        i = int((colours - image.mean(dim=(1, 2))).abs().sum(dim=1).argmin())
        assert (image - colours[i][:, None, None]).abs().max() <= 3
        found.append(i)
    return found


# --------------------------------------------------------------------------- cifar10
def write_cifar10(root: Path, per_batch: int = 6, test: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``root/cifar-10-batches-py`` in the python version's format; returns all rows and labels
    (train batches first, then test_batch)."""
    folder = root / images.CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 5, size=n)]
        with (folder / name).open("wb") as handle:
            pickle.dump(
                {"batch_label": name, "labels": y, "data": x, "filenames": [f"{name}_{i}.png" for i in range(n)]},
                handle,
                protocol=2,
            )
        rows.append(x)
        labels += y
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}, handle, protocol=2)
    return np.concatenate(rows), np.array(labels)


def test_cifar10_reads_the_python_batches(tmp_path: Path) -> None:
    rows, labels = write_cifar10(tmp_path)
    splits = data.build(dataset_config("cifar10", root=str(tmp_path)), 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 5, 5)
    assert splits.meta.class_names[:3] == ("airplane", "automobile", "bird") and splits.meta.input_shape == (3, 32, 32)
    assert splits.train.x.dtype == torch.uint8  # held compactly
    # Each image: 1,024 red values, then green, then blue, row-major 32x32; its label kept.
    label_of = {bytes(row): int(label) for row, label in zip(rows, labels, strict=True)}

    def keys(split: Split) -> list[bytes]:
        assert [label_of[bytes(x.numpy().reshape(-1))] for x in split.x] == split.y.tolist()
        return sorted(bytes(x.numpy().reshape(-1)) for x in split.x)

    assert sorted(keys(splits.train) + keys(splits.val)) == sorted(bytes(r) for r in rows[:30])
    assert keys(splits.test) == sorted(bytes(r) for r in rows[30:])  # test_batch is the test split
    # The statistics are the train split's, in [0, 1] pixel units.
    mean = splits.train.x.double().mean(dim=(0, 2, 3)) / 255
    assert splits.meta.input_mean == pytest.approx(tuple(mean.tolist()), abs=1e-9)


def test_cifar10_refuses_a_pickle_that_names_other_code(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with (tmp_path / images.CIFAR10_FOLDER / "data_batch_3").open("wb") as handle:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "hook": print}, handle, protocol=2)
    with pytest.raises(
        DQUserError,
        match=r"is not CIFAR-10's python version \(UnpicklingError: (__builtin__|builtins)\.print is not allowed",
    ):
        data.build(dataset_config("cifar10", root=str(tmp_path)), 0)


# --------------------------------------------------------------------------- celeba
# Per image: (partition, Blond_Hair, Male, Smiling); each split holds both values of each.
CELEBA_ROWS = [
    (0, 1, 0, 1),
    (0, 0, 1, 0),
    (0, 1, 1, 0),
    (0, 0, 0, 1),
    (1, 1, 0, 0),
    (1, 0, 1, 1),
    (2, 0, 1, 1),
    (2, 1, 0, 0),
]


def write_celeba(root: Path) -> Path:
    """``root/celeba`` as CelebA's files are: aligned 178x218 JPEGs (here 20x24), the
    attribute list (count line, names line, -1/1 rows with two-space padding) and the
    partition file."""
    folder = root / "celeba"
    names = [f"{i + 1:06d}.jpg" for i in range(len(CELEBA_ROWS))]
    for i, name in enumerate(names):
        write_jpeg(folder / "img_align_celeba" / name, i, (20, 24))
    attributes = group_images.CELEBA_ATTRIBUTES
    lines = [str(len(names)), " ".join(attributes)]
    for name, (_, blond, male, smiling) in zip(names, CELEBA_ROWS, strict=True):
        values = {"Blond_Hair": blond, "Male": male, "Smiling": smiling}
        lines.append(name + "".join(f" {1 if values.get(a, 0) else -1:>2}" for a in attributes))
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    partition = [f"{name} {row[0]}" for name, row in zip(names, CELEBA_ROWS, strict=True)]
    (folder / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return folder


def test_celeba_reads_attributes_partition_and_images(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    splits = data.build(dataset_config("celeba", root=str(tmp_path), image_size=8), 0)
    assert splits.meta.class_names == ("not_Blond_Hair", "Blond_Hair") and splits.meta.group_names == (
        "not_Male",
        "Male",
    )
    assert splits.meta.input_shape == (3, 8, 8) and splits.meta.modality == "image"
    for part, split in enumerate((splits.train, splits.val, splits.test)):
        ids = written(split.x, len(CELEBA_ROWS))
        assert sorted(ids) == [i for i, row in enumerate(CELEBA_ROWS) if row[0] == part]
        assert split.y.tolist() == [CELEBA_ROWS[i][1] for i in ids]
        assert split.group.tolist() == [CELEBA_ROWS[i][2] for i in ids]
    # Another target and group attribute, chosen by config.
    other = data.build(
        dataset_config("celeba", root=str(tmp_path), image_size=8, target="Smiling", sensitive="Blond_Hair"), 0
    )
    ids = written(other.train.x, len(CELEBA_ROWS))
    assert other.train.y.tolist() == [CELEBA_ROWS[i][3] for i in ids]
    assert other.train.group.tolist() == [CELEBA_ROWS[i][1] for i in ids]


def test_celeba_refuses_the_same_attribute_twice_and_an_unknown_one(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    with pytest.raises(DQUserError, match=r"dataset\.target and dataset\.sensitive are both Male"):
        data.build(dataset_config("celeba", root=str(tmp_path), target="Male"), 0)
    with pytest.raises(DQUserError, match=r"has no sensitive attribute 'Hair'; allowed: Male, 5_o_Clock_Shadow"):
        data.build(dataset_config("celeba", root=str(tmp_path), sensitive="Hair"), 0)


def test_celeba_names_a_listed_image_that_is_missing(tmp_path: Path) -> None:
    folder = write_celeba(tmp_path)
    (folder / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(
        DQUserError, match=r"^dataset celeba: image .*000003\.jpg not found \(listed in its metadata\)$"
    ):
        data.build(dataset_config("celeba", root=str(tmp_path)), 0)


# --------------------------------------------------------------------------- waterbirds
def test_waterbirds_reads_wilds_metadata_and_images(tmp_path: Path) -> None:
    write_waterbirds(tmp_path)
    splits = data.build(dataset_config("waterbirds", root=str(tmp_path), image_size=16), 0)
    assert splits.meta.class_names == ("landbird", "waterbird") and splits.meta.group_names == ("land", "water")
    for part, split in enumerate((splits.train, splits.val, splits.test)):
        ids = written(split.x, len(WATERBIRDS_ROWS))
        assert sorted(ids) == [i for i, row in enumerate(WATERBIRDS_ROWS) if row[1] == part]
        assert split.y.tolist() == [WATERBIRDS_ROWS[i][0] for i in ids]
        assert split.group.tolist() == [WATERBIRDS_ROWS[i][2] for i in ids]
    # 16x16 RGB as uint8: 768 bytes per image, a quarter of float32's.
    assert splits.train.x.shape[1:] == (3, 16, 16) and splits.train.x.element_size() * splits.train.x[0].numel() == 768
    # A second build reads the decoded images from the cache: the same tensors.
    again = data.build(dataset_config("waterbirds", root=str(tmp_path), image_size=16), 0)
    assert torch.equal(again.train.x, splits.train.x) and torch.equal(again.test.group, splits.test.group)


def test_waterbirds_needs_every_split_and_its_columns(tmp_path: Path) -> None:
    folder = write_waterbirds(tmp_path, [row for row in WATERBIRDS_ROWS if row[1] != 1])
    with pytest.raises(DQUserError, match=r"dataset waterbirds: its split column gives no val rows"):
        data.build(dataset_config("waterbirds", root=str(tmp_path)), 0)
    pd.read_csv(folder / "metadata.csv").drop(columns=["place"]).to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(
        DQUserError, match=r"metadata\.csv lacks column place \(expected img_filename, y, split, place\)"
    ):
        data.build(dataset_config("waterbirds", root=str(tmp_path)), 0)


def test_a_run_on_waterbirds_reports_each_group_and_group_dro_pairs_it_with_the_label(make_cfg, tmp_path: Path) -> None:
    write_waterbirds(tmp_path / "data")
    overrides = (
        "dataset=waterbirds",
        f"dataset.root={tmp_path / 'data'}",
        "dataset.image_size=16",
        "model=cnn",
        "explain.enabled=false",
    )
    metrics = dq.train(make_cfg(*overrides), run_dir=tmp_path / "run")
    land, water = metrics["test/group_accuracy/land"], metrics["test/group_accuracy/water"]
    # The test split: a landbird on water and a waterbird on land, one example per group.
    assert metrics["test/examples"] == 2 and (land + water) / 2 == pytest.approx(metrics["test/accuracy"])
    # Group DRO composes with it: one weight per (label, place) group, logged after the epoch.
    dq.train(make_cfg(*overrides, "regularizer=[group_dro]"), run_dir=tmp_path / "dro")
    logged = (tmp_path / "dro" / "metrics.jsonl").read_text()
    for group in ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water"):
        assert f'"group_dro/q/{group}"' in logged


# --------------------------------------------------------------------------- civil_comments
# Per comment: (text, split, toxicity, black, muslim)
COMMENTS = [
    ("you are a wonderful neighbour", "train", 0.0, 0.0, 0.0),
    ("what a stupid idiot take", "train", 0.8, 0.6, 0.0),
    ("the mosque hosts a wonderful dinner", "train", 0.1, 0.0, 0.9),
    ("idiot idiot stupid", "train", 0.5, 0.0, 0.5),
    ("black voters turned out", "train", 0.49, 0.7, 0.0),
    ("a stupid wonderful neighbour", "val", 0.6, 0.0, 0.0),
    ("neighbour dinner", "val", 0.2, 0.5, 0.0),
    ("stupid dinner", "test", 0.7, 0.0, 0.2),
    ("wonderful voters", "test", 0.3, 0.9, 0.0),
]


def write_civil_comments(root: Path) -> Path:
    """``root/civilcomments_v1.0/all_data_with_identities.csv`` with WILDS' columns (an
    unnamed index first, as WILDS reads it with index_col=0)."""
    folder = root / civil_comments.FOLDER
    folder.mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "id": range(100, 100 + len(COMMENTS)),
            "comment_text": [c[0] for c in COMMENTS],
            "split": [c[1] for c in COMMENTS],
            "toxicity": [c[2] for c in COMMENTS],
            **{name: [0.0] * len(COMMENTS) for name in civil_comments.IDENTITIES},
            "identity_any": [float(c[3] >= 0.5 or c[4] >= 0.5) for c in COMMENTS],
            "severe_toxicity": [0.0] * len(COMMENTS),
        }
    )
    frame["black"], frame["muslim"] = [c[3] for c in COMMENTS], [c[4] for c in COMMENTS]
    frame.to_csv(folder / civil_comments.FILE)
    return folder


def test_civil_comments_reads_wilds_csv(tmp_path: Path) -> None:
    write_civil_comments(tmp_path)
    splits = data.build(dataset_config("civil_comments", root=str(tmp_path), min_freq=1, max_length=8), 0)
    assert splits.meta.modality == "text" and splits.meta.class_names == ("non_toxic", "toxic")
    assert splits.meta.group_names == ("no_black", "black")
    vocab = splits.meta.vocab
    by_text = {c[0]: c for c in COMMENTS}
    for part, split in zip(("train", "val", "test"), (splits.train, splits.val, splits.test), strict=True):
        texts = [" ".join(vocab[i] for i in row.tolist() if i != splits.meta.pad_index) for row in split.x]
        assert sorted(texts) == sorted(c[0] for c in COMMENTS if c[1] == part)  # min_freq=1: words seen in train
        assert split.y.tolist() == [int(by_text[t][2] >= 0.5) for t in texts]
        assert split.group.tolist() == [int(by_text[t][3] >= 0.5) for t in texts]
    assert sorted(splits.train.y.tolist()) == [0, 0, 0, 1, 1]  # 0.5 is toxic, 0.49 is not
    muslim = data.build(dataset_config("civil_comments", root=str(tmp_path), sensitive="muslim", min_freq=1), 0)
    assert muslim.meta.group_names == ("no_muslim", "muslim") and sorted(muslim.train.group.tolist()) == [0, 0, 0, 1, 1]


# --------------------------------------------------------------------------- missing roots
@pytest.mark.parametrize(
    ("name", "where", "page"),
    [
        ("celeba", "celeba", "mmlab.ie.cuhk.edu.hk/projects/CelebA.html"),
        ("waterbirds", "waterbirds_v1.0", "worksheets.codalab.org"),
        ("civil_comments", "civilcomments_v1.0", "worksheets.codalab.org"),
        ("cifar10", "cifar-10-batches-py", "www.cs.toronto.edu/~kriz/cifar.html"),
    ],
)
def test_a_missing_root_says_which_files_where_and_where_to_download(
    make_cfg, tmp_path: Path, name, where, page
) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    run_dir = tmp_path / "run"
    with pytest.raises(DQUserError) as caught:
        dq.train(make_cfg(f"dataset={name}", f"dataset.root={root}"), run_dir=run_dir)
    message = str(caught.value)
    assert f"{root / where}" in message and page in message and "expected" in message and "\n" not in message
    assert not run_dir.exists()  # before anything is written


# --------------------------------------------------------------------------- uint8 batches
def test_uint8_images_give_the_same_float_batches_as_float_storage() -> None:
    pixels = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    compact = Split(x=pixels, y=torch.arange(10), group=torch.arange(10) % 2)
    full = Split(x=pixels.float() / 255, y=compact.y, group=compact.group)
    assert torch.equal(float_inputs(pixels), full.x) and float_inputs(full.x) is full.x  # float data passes as is
    for kind in (TensorBatches, LoaderBatches):
        a = list(kind(compact, 4, torch.device("cpu"), torch.Generator().manual_seed(0)))
        b = list(kind(full, 4, torch.device("cpu"), torch.Generator().manual_seed(0)))
        assert [batch.x.dtype for batch in a] == [torch.float32] * 3
        assert all(torch.equal(p.x, q.x) and torch.equal(p.group, q.group) for p, q in zip(a, b, strict=True))
    assert compact.subset(slice(0, 3)).x.dtype == torch.uint8  # limit keeps the storage
