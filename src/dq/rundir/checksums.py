"""checksums.json: the sha256 of each file a run wrote, recorded as it was written.

torch never checks the CRCs of its own archive, so a flipped byte inside a checkpoint's
tensors loads as other weights; a changed digit in metrics.json is still valid JSON. Every
reader (``dq.rundir.read``) compares a file with the digest recorded here and refuses one that
differs, in one line naming it. The file, beside run.json (which it does not list: run.json
changes with the run's status)::

    {"algorithm": "sha256",
     "files":   {"checkpoints/best.pt": "<hex>", "metrics.json": "<hex>", ...},
     "writing": {"checkpoints/last.pt": "<hex>"}}

A file rewritten during the run (last.pt each epoch) has its new digest put under
``writing`` before the temporary file is renamed into place and moved to ``files`` after:
whichever version a ``kill -9`` leaves, old or new, matches. metrics.jsonl (appended each
epoch) and .hydra/config.yaml (rewritten by Hydra and on resume) are recorded as they stand
when the run completes, and dropped from the list while a run or a resumed run trains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dq.rundir.layout import CHECKSUMS_JSON, CONFIG_YAML, METRICS_JSONL
from dq.rundir.read import read_manifest, sha256_file
from dq.rundir.write import write_json

# Rewritten outside dq's own atomic writes while a run trains: recorded at its end only.
RECORDED_AT_END = (METRICS_JSONL, CONFIG_YAML)
Writer = Callable[[Callable[[Path], None]], None]


def _manifest(run_dir: Path) -> dict[str, Any]:
    manifest = read_manifest(run_dir) or {}
    return {"algorithm": "sha256", "files": dict(manifest.get("files", {})), "writing": {}}


def _update(
    run_dir: Path, files: Mapping[str, str], writing: Mapping[str, str] | None = None, drop: Iterable[str] = ()
) -> None:
    manifest = _manifest(run_dir)
    for name in drop:
        manifest["files"].pop(name, None)
    manifest["files"].update(files)
    manifest["writing"].update(writing or {})
    write_json(Path(run_dir) / CHECKSUMS_JSON, manifest)


def begin(run_dir: Path, *, resume: bool) -> None:
    """A run starts in ``run_dir``: a fresh one with an empty list, a resumed one without the
    files it is about to change outside dq's atomic writes (``RECORDED_AT_END``)."""
    if resume:
        _update(run_dir, {}, drop=RECORDED_AT_END)
    else:
        write_json(Path(run_dir) / CHECKSUMS_JSON, {"algorithm": "sha256", "files": {}, "writing": {}})


def write_recorded(run_dir: Path, name: str, write: Writer) -> None:
    """``write(before_replace)`` writes ``run_dir/name`` through a dq.rundir.write atomic write
    (``save_torch``, ``write_json``, ... given ``before_replace``); the new file's sha256 is
    recorded as pending before the rename and as the file's after it."""
    digest: list[str] = []

    def pending(tmp: Path) -> None:
        digest.append(sha256_file(tmp))
        _update(run_dir, {}, writing={name: digest[0]})

    write(pending)
    _update(run_dir, {name: digest[0]})


def write_recorded_json(run_dir: Path, name: str, data: Mapping[str, Any]) -> None:
    """``dq.rundir.write.write_json`` of ``run_dir/name``, its sha256 recorded."""
    write_recorded(run_dir, name, lambda hook: write_json(Path(run_dir) / name, data, hook))


def record(run_dir: Path, names: Iterable[str]) -> None:
    """Record the sha256 of files as they stand now (those of ``names`` that exist): what a
    completed run leaves, or what a step wrote that no one else writes."""
    present = [name for name in names if (Path(run_dir) / name).is_file()]
    _update(run_dir, {name: sha256_file(Path(run_dir) / name) for name in present})
