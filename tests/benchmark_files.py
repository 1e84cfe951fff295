"""Tiny benchmark files written in their published on-disk layout, for the tests that read
them (tests/test_benchmarks.py: the loaders; tests/test_paper.py: tables that need a
dataset root): solid-colour JPEGs, so a test can tell which image came back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from dq.data import group_images


def colour(i: int) -> tuple[int, int, int]:
    """A distinct solid colour per image (JPEG keeps a flat colour within a few levels)."""
    return (20 + 37 * i) % 256, (200 - 23 * i) % 256, (90 + 51 * i) % 256


def write_jpeg(path: Path, i: int, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(i)).save(path, quality=95)


# Per image: (y, split, place): all four (y, place) groups in train.
WATERBIRDS_ROWS = [
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 1),
    (1, 0, 1),
    (1, 0, 1),
    (1, 0, 0),
    (0, 1, 0),
    (1, 1, 1),
    (0, 2, 1),
    (1, 2, 0),
]


def write_waterbirds(root: Path, rows: list[tuple[int, int, int]] = WATERBIRDS_ROWS) -> Path:
    """``root/waterbirds_v1.0`` as WILDS ships it: metadata.csv (img_id, img_filename, y,
    split, place, place_filename) and the JPEGs in per-species folders."""
    folder = root / group_images.WATERBIRDS_FOLDER
    records = []
    for i, (y, split, place) in enumerate(rows):
        name = f"{'001.Black_footed_Albatross' if y else '090.Red_breasted_Merganser'}/bird_{i:04d}.jpg"
        write_jpeg(folder / name, i, (30, 26))
        place_file = "/o/ocean/00001.jpg" if place else "/b/bamboo_forest/00002.jpg"
        records.append(
            {
                "img_id": i + 1,
                "img_filename": name,
                "y": y,
                "split": split,
                "place": place,
                "place_filename": place_file,
            }
        )
    pd.DataFrame(records).to_csv(folder / "metadata.csv", index=False)
    return folder
