"""Image benchmarks with groups, read from a local root in their published layout: celeba
and waterbirds (Sagawa et al. 2020's group-shift benchmarks).

Neither can ship with the project (licences restrict them to non-commercial research, and
they weigh gigabytes), so users download them (docs/reference/datasets.md says where) and
set ``dataset.root``. Both use the official train / val / test partition, hold their
images as uint8 (``dq.data_records.float_inputs`` converts each batch) and give one
sensitive attribute as the group, so that ``regularizer=group_dro`` forms Sagawa et al.'s
(label, attribute) groups and the group metrics report each group's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from dq.config.validation import require
from dq.data import sources, splitting
from dq.data.images import assemble_images, read_image_files
from dq.data.registry import DatasetConfig, register
from dq.data_records import Splits
from dq.errors import DQUserError

DEFAULT_ROOT = "~/.cache/dq"


@dataclass
class GroupImageDatasetConfig(DatasetConfig):
    """Images from ``root`` (default ``~/.cache/dq``), centre-cropped and resized to
    ``image_size`` pixels a side (default 64: CPU-sized; the papers use 224 for ResNet-50);
    ``sensitive`` picks the group attribute. ``val_fraction`` / ``test_fraction`` are not
    used: the official partition is."""

    root: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)
    image_size: int = 64
    sensitive: Optional[str] = None  # noqa: UP045

    def validate(self) -> None:
        super().validate()
        require(8 <= self.image_size <= 512, "image_size", f"must be in [8, 512], got {self.image_size}")

    def folder(self, name: str) -> Path:
        """Where the dataset's files are: ``<root>/<name>``."""
        return Path(self.root or DEFAULT_ROOT).expanduser() / name


# --------------------------------------------------------------------------- celeba
# The 40 attributes of list_attr_celeba.txt, in the file's order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
CELEBA_FILES = ("img_align_celeba/", "list_attr_celeba.txt", "list_eval_partition.txt")
CELEBA_DOWNLOAD = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
# Sagawa et al.'s CelebA task: blond hair or not, grouped by gender (Male).
CELEBA_SENSITIVE = ("Male", *(a for a in CELEBA_ATTRIBUTES if a != "Male"))


@dataclass
class CelebADatasetConfig(GroupImageDatasetConfig):
    """CelebA: ``target`` is the attribute to predict (default Blond_Hair), ``sensitive``
    the group attribute (default Male); both among the 40 of list_attr_celeba.txt."""

    target: str = "Blond_Hair"

    def validate(self) -> None:
        super().validate()
        require(self.target in CELEBA_ATTRIBUTES, "target", f"must be a CelebA attribute, got {self.target!r}")


def _read_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_celeba_attributes(path: Path) -> tuple[list[str], np.ndarray]:
    """Image names and the {-1, 1} attribute matrix [N, 40] of ``list_attr_celeba.txt``: a
    line with the image count, a line of attribute names, then one row per image."""
    lines = _read_lines(path)
    if len(lines) < 2 or tuple(lines[1]) != CELEBA_ATTRIBUTES or not lines[0][0].isdigit():
        raise DQUserError(f"dataset celeba: {path} is not CelebA's attribute list (a count, the 40 names, then rows)")
    rows = lines[2:]
    if int(lines[0][0]) != len(rows) or any(len(row) != 41 for row in rows):
        raise DQUserError(f"dataset celeba: {path} announces {lines[0][0]} rows of 40 values, has {len(rows)}")
    return [row[0] for row in rows], np.array([row[1:] for row in rows], dtype=np.int64)


@register("celeba", schema=CelebADatasetConfig, sensitive=CELEBA_SENSITIVE)
def build_celeba(cfg: CelebADatasetConfig, seed: int) -> Splits:
    """CelebA (aligned and cropped, 178×218) from ``<root>/celeba`` (torchvision's
    layout): the target attribute as label, the sensitive one as group, the official
    partition (list_eval_partition.txt: 0 train, 1 val, 2 test)."""
    sensitive = cfg.sensitive or CELEBA_SENSITIVE[0]
    if sensitive == cfg.target:
        raise DQUserError(
            f"dataset celeba: dataset.target and dataset.sensitive are both {sensitive}; choose two attributes"
        )
    folder = cfg.folder("celeba")
    sources.require_files("celeba", folder, CELEBA_FILES, CELEBA_DOWNLOAD)
    names, attributes = read_celeba_attributes(folder / "list_attr_celeba.txt")
    partition = dict((row[0], row[1]) for row in _read_lines(folder / "list_eval_partition.txt"))
    missing = [name for name in names if name not in partition]
    if missing:
        raise DQUserError(f"dataset celeba: {missing[0]} has attributes but no line in list_eval_partition.txt")
    split_ids = np.array([int(partition[name]) for name in names])
    x = read_image_files([folder / "img_align_celeba" / name for name in names], cfg.image_size, "celeba")
    y = (attributes[:, CELEBA_ATTRIBUTES.index(cfg.target)] == 1).astype(np.int64)
    group = (attributes[:, CELEBA_ATTRIBUTES.index(sensitive)] == 1).astype(np.int64)
    return assemble_images(
        "celeba",
        x,
        y,
        splitting.official(split_ids, seed, "celeba"),
        (f"not_{cfg.target}", cfg.target),
        compact=True,
        group=group,
        group_names=(f"not_{sensitive}", sensitive),
    )


# --------------------------------------------------------------------------- waterbirds
WATERBIRDS_FOLDER = "waterbirds_v1.0"  # WILDS' folder under its root_dir
WATERBIRDS_FILES = ("metadata.csv",)
WATERBIRDS_COLUMNS = ("img_filename", "y", "split", "place")
WATERBIRDS_DOWNLOAD = (
    "https://worksheets.codalab.org/rest/bundles/0x505056d5cdea4e4eaa0e242cbfe2daa4/contents/blob/ "
    "(WILDS' waterbirds_v1.0.tar.gz)"
)


@register("waterbirds", schema=GroupImageDatasetConfig, sensitive=("place",))
def build_waterbirds(cfg: GroupImageDatasetConfig, seed: int) -> Splits:
    """Waterbirds (CUB birds pasted on Places backgrounds) from ``<root>/waterbirds_v1.0``
    (WILDS' layout: metadata.csv with img_filename, y (1 waterbird), split (0 train, 1 val,
    2 test), place (1 water background), and the images at img_filename)."""
    import pandas as pd

    folder = cfg.folder(WATERBIRDS_FOLDER)
    sources.require_files("waterbirds", folder, WATERBIRDS_FILES, WATERBIRDS_DOWNLOAD)
    frame = pd.read_csv(folder / "metadata.csv")
    absent = [column for column in WATERBIRDS_COLUMNS if column not in frame.columns]
    if absent:
        raise DQUserError(
            f"dataset waterbirds: {folder / 'metadata.csv'} lacks column {absent[0]} "
            f"(expected {', '.join(WATERBIRDS_COLUMNS)})"
        )
    x = read_image_files([folder / name for name in frame["img_filename"]], cfg.image_size, "waterbirds")
    return assemble_images(
        "waterbirds",
        x,
        frame["y"].to_numpy(dtype=np.int64),
        splitting.official(frame["split"].to_numpy(), seed, "waterbirds"),
        ("landbird", "waterbird"),
        compact=True,
        group=frame["place"].to_numpy(dtype=np.int64),
        group_names=("land", "water"),
    )
