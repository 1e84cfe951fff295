"""Parsed datasets kept as uncompressed .npz files, keyed by the sha256 of their source files.

Parsing a source (mnist5k's CSV.gz with pandas, Fashion-MNIST's gzipped idx files) costs
more than a run's other start-up work; loading the same arrays from an uncompressed .npz is
a memory read. :func:`cached_arrays` returns the arrays of ``parse()``, from the cache when an
entry for the sources' current content exists, else by parsing and storing them.

- Where: ``$DQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/dq/arrays``, else ``~/.cache/dq/arrays``.
  Deleting the folder clears it; nothing else refers to it.
- Key: the sha256 of every source file and :data:`FORMAT_VERSION`. Hashing 30 MB of
  Fashion-MNIST takes ~30 ms, so each file's digest is remembered in a small JSON side file
  under ``digests/``, valid while the file's path, size and mtime_ns are unchanged.
- Safety: entries are written atomically (``dq.rundir.write.atomic_write``) and read with
  ``allow_pickle=False``. A cache is never a reason for a run to fail: a corrupt, truncated
  or unreadable entry is parsed again and rewritten; an unwritable folder skips caching.
- Bounds: an entry's file name is ``<name>-<digest>.npz``, and each load refreshes its
  modification time (``os.utime``), so the mtime says when it was last used. After a store,
  the entries of the same name (exactly: ``celeba-images`` never touches
  ``celeba-images-x``) beyond the ``keep`` most recently used are removed, the new one
  always kept; best effort: an entry that vanished or cannot be removed is left alone.
  :func:`cached_arrays` keeps 1 (a changed source replaces its old entry).
  :func:`cached_by_key` keeps every entry unless the caller bounds it: split indices are
  small (8 bytes per example) and a seed sweep legitimately holds one per seed, while decoded
  images (``dq.data.images.read_image_files``) are large and keep a few.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path

import numpy as np

from dq.rundir.write import atomic_write, write_text

# Bump when what a builder stores under a name changes (layout, dtype, key names).
FORMAT_VERSION = 1
CACHE_ENV = "DQ_CACHE_DIR"
DIGESTS = "digests"

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path:
    """The cache folder: ``$DQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/dq/arrays``, else
    ``~/.cache/dq/arrays``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "dq" / "arrays"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path, folder: Path) -> str:
    """The sha256 of ``path``, from its side file under ``folder/digests/`` when the path,
    size and mtime_ns still match, else hashed (and the side file rewritten, best effort)."""
    path = path.resolve()
    stat = path.stat()
    stamp = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    side = folder / DIGESTS / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    with suppress(OSError, ValueError, AttributeError):
        known = json.loads(side.read_text(encoding="utf-8"))
        if {key: known.get(key) for key in stamp} == stamp and isinstance(known.get("sha256"), str):
            return str(known["sha256"])
    sha = _hash_file(path)
    with suppress(Exception):  # an unwritable cache only costs the next run a re-hash
        write_text(side, json.dumps({**stamp, "sha256": sha}) + "\n")
    return sha


def entry_path(sources: Sequence[Path], name: str, folder: Path) -> Path:
    """The cache file of ``name`` parsed from ``sources`` as they are now."""
    key = hashlib.sha256(f"dq-arrays-v{FORMAT_VERSION}:{name}".encode())
    for source in sources:
        key.update(file_digest(source, folder).encode())
    return folder / f"{name}-{key.hexdigest()[:32]}.npz"


def _load(path: Path) -> Arrays | None:
    """Every array of ``path`` read into memory, or None when it is missing, damaged or
    unreadable (reading each member to its end makes zipfile check its CRC). A load marks
    the entry used (its mtime, which decides what :func:`_prune` keeps)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except Exception:  # BadZipFile, EOFError, ValueError, OSError, ...: rebuild it
        return None
    with suppress(OSError):  # a read-only cache still serves its entries
        os.utime(path)
    return arrays


def _store(path: Path, arrays: Mapping[str, np.ndarray], keep: int | None) -> None:
    """Write ``arrays`` uncompressed and atomically, then keep at most ``keep`` entries of
    the same name (:func:`_prune`; None keeps all). Best effort: failures are swallowed."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:  # a file object, so numpy does not append ".npz"
            np.savez(handle, **arrays)

    try:
        atomic_write(path, write)
    except Exception:  # unwritable, full or read-only: run without a cache
        return
    if keep is not None:
        _prune(path, keep)


def _name(entry: Path) -> str:
    """The name an entry was stored under: its file name before ``-<digest>.npz``."""
    return entry.name.rsplit("-", 1)[0]


def _prune(path: Path, keep: int) -> None:
    """Remove the entries of ``path``'s name beyond the ``keep`` most recently used
    (``path``, just written, always stays). Never raises: an entry that vanished meanwhile
    (another run pruned it) or cannot be removed is skipped."""
    name = _name(path)
    used = []
    with suppress(OSError):
        for entry in path.parent.glob(f"{glob.escape(name)}-*.npz"):
            if entry != path and _name(entry) == name:
                with suppress(OSError):
                    used.append((entry.stat().st_mtime_ns, entry))
    used.sort(reverse=True)
    for _, old in used[keep - 1 :]:
        with suppress(OSError):
            old.unlink()


def cached_arrays(sources: Path | Sequence[Path], name: str, parse: Callable[[], Mapping[str, np.ndarray]]) -> Arrays:
    """The arrays ``parse()`` makes from ``sources``, from the cache when it holds them.

    Args:
        sources: the file(s) ``parse`` reads; their content (sha256) keys the entry.
        name: names the entry (e.g. ``mnist5k``); change it, or :data:`FORMAT_VERSION`,
            when ``parse`` starts returning something else for the same files.
        parse: builds the arrays from the sources (plain numeric or fixed-width string
            dtypes: entries are read without pickle). Its errors propagate unchanged.

    Returns:
        The same names, dtypes, shapes and values whether parsed or loaded.
    """
    paths = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    folder = cache_dir()
    try:
        path = entry_path(paths, name, folder)
    except OSError:  # a source that cannot be read: let the parser say what is wrong
        return dict(parse())
    loaded = _load(path)  # None when missing, damaged or unreadable
    if loaded is not None:
        return loaded
    arrays = {key: np.asarray(value) for key, value in parse().items()}
    _store(path, arrays, keep=1)
    return arrays


def cached_by_key(
    name: str, key: bytes, build: Callable[[], Mapping[str, np.ndarray]], keep: int | None = None
) -> Arrays:
    """The arrays ``build()`` makes, stored under ``name`` and the sha256 of ``key`` (bytes
    that determine the result completely, e.g. the labels, fractions, seed and the version
    of the library that draws). Entries with other keys stay (other seeds, other data), or
    with ``keep`` the ``keep`` most recently used of them, this one included. Damaged
    entries are rebuilt and an unwritable folder skips caching, as in :func:`cached_arrays`."""
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1 or None, got {keep}")
    digest = hashlib.sha256(f"dq-arrays-v{FORMAT_VERSION}:{name}:".encode() + key).hexdigest()[:32]
    path = cache_dir() / f"{name}-{digest}.npz"
    loaded = _load(path)
    if loaded is not None:
        return loaded
    arrays = {k: np.asarray(value) for k, value in build().items()}
    _store(path, arrays, keep)
    return arrays
