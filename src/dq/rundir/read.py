"""Reading a run directory's files back, with one diagnosis for each way a file can be broken.

Every reader of a run (``load_run``, ``dq-explain``, ``dq-train resume=``, ``dq-report``,
``dq-table``) reads run.json, metrics.json, metrics.jsonl, ``.hydra/config.yaml`` and the
checkpoints through these functions, so a truncated, empty, foreign or missing file is the
same one line wherever it is met::

    <run>/checkpoints/best.pt is truncated or not a torch checkpoint (RuntimeError: ...);
    re-run the training or restore the file

The line is a ``CorruptRunFile`` (a ``DQUserError``: exit 2, no traceback). A reader that
does not need a file never opens it, so a broken file it does not need is no error there.

Two checks come before and after parsing. Before: ``stat`` says the path is a regular
file (a named pipe, a device such as /dev/zero, a directory or a symlink loop is named,
never opened or read to its end) and text files are read to ``MAX_TEXT_BYTES`` at most.
After: the bytes' sha256 must be one checksums.json recorded for the file (recorded by
dq.rundir.checksums as the file was written, verified here); a run without checksums.json,
written before dq recorded them, is read unchecked.

The plain readers below them (``read_regular``, ``read_json``, ``read_jsonl``,
``load_checkpoint``) make the first check only: they read any file dq wrote (sweep.json, a
job's run.json while its sweep decides what to do with it) and raise the usual ``OSError``
or ``ValueError``. A run's own files are read with the checked readers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq import metric_keys as keys
from dq.errors import DQUserError, first_line
from dq.rundir.layout import CHECKSUMS_JSON, CONFIG_YAML, METRICS_JSON, METRICS_JSONL, RUN_JSON

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

# The run-wide config nodes every dq run's config.yaml has (dq.config.run).
CONFIG_NODES = ("dataset", "model", "trainer")
RESTORE = "re-run the training or restore the file"
EPOCHS_RUN = keys.train("epochs_run")  # metrics.json's count of metrics.jsonl's lines


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(read_regular(path).decode("utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = read_regular(path).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# The most bytes dq reads from a run's text file (JSON, JSONL, YAML): a metrics.jsonl of
# 100,000 epochs is about 100 MB less than this. Checkpoints are bounded by their own size.
MAX_TEXT_BYTES = 256 * 1024 * 1024
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFile(OSError):
    """A path dq would read that is not a plain file, or one too big to be one of dq's.

    Attributes:
        problem: what it is, without the path (``is a named pipe (FIFO), not a regular file``).
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.problem = problem


def _special(path: Path, mode: int) -> str | None:
    """What ``path`` is when it is not a regular file (None when it is one)."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    target = f" ({os.path.realpath(path)})" if os.path.islink(path) and not stat.S_ISDIR(mode) else ""
    return f"is {kind}{target}, not a regular file"


def not_a_directory(path: Path) -> str:
    """Why ``path`` cannot be a run directory: ``no such directory``, or what it is instead
    (a symlink loop, a file, a pipe)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such directory"
    except OSError as error:
        return (
            "is a symlink loop, not a directory" if error.errno == errno.ELOOP else f"cannot be read ({error.strerror})"
        )
    kind = "a regular file" if stat.S_ISREG(mode) else next((n for t, n in _FILE_KINDS if t(mode)), "not a file")
    return f"is {kind}, not a directory"


def regular_file_size(path: Path) -> int:
    """The size of ``path``, which must be a regular file (symlinks followed); nothing is
    opened, so a named pipe cannot block and /dev/zero is not read.

    Raises:
        FileNotFoundError: there is nothing at ``path``.
        NotRegularFile: a directory, a pipe, a device, a socket or a symlink loop.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile(path, "is a symlink loop, not a regular file") from None
        raise
    problem = _special(Path(path), info.st_mode)
    if problem is not None:
        raise NotRegularFile(path, problem)
    return info.st_size


def read_regular(path: Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes: a pipe, a device or
    a symlink loop is refused before it is opened, and no read goes past ``limit``.

    Raises:
        FileNotFoundError: there is nothing at ``path``.
        NotRegularFile: not a regular file (``regular_file_size``), or larger than ``limit``.
    """
    regular_file_size(path)
    # O_NONBLOCK: a pipe swapped in after the check still cannot block the open.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        problem = _special(Path(path), os.fstat(fd).st_mode)
        if problem is not None:
            raise NotRegularFile(path, problem)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotRegularFile(path, f"is larger than {limit // 2**20} MiB, more than any file dq writes there")
    return data


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of plain tensors and Python values, loaded with ``weights_only=True``:
    unpickling a file never runs code named in it.

    Raises:
        DQUserError: the file names any other object (a class, a function), in one line.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # a plain pickle's protocol: refused below, in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # what weights_only raises for a global it does not allow
        raise DQUserError(
            f"{path} holds objects other than tensors and plain values; refused to load it "
            f"(checkpoints load with weights_only=True: {first_line(str(error))[:200]})"
        ) from error  # read_checkpoint words torch's own reason


class CorruptRunFile(DQUserError):
    """A run file that is missing, empty, truncated or not what dq writes there.

    Attributes:
        path: the file as the reader was given it (its run directory joined with ``name``).
        name: the file relative to its run directory (``checkpoints/best.pt``).
        problem: what is wrong, without the path (``is empty (0 bytes)``).
    """

    def __init__(self, run_dir: Path, name: str, problem: str, remedy: str = RESTORE) -> None:
        self.path = Path(run_dir) / name
        self.name = name
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{self.path} {problem}; {remedy}")

    @property
    def short(self) -> str:
        """The line with the path relative to the run (a report lists the run beside it)."""
        return f"{self.name} {self.problem}; {self.remedy}"


def unreadable(run_dir: Path, name: str, error: OSError) -> CorruptRunFile:
    """The line for a file that could not be opened: missing, a pipe, a device, a loop..."""
    if isinstance(error, FileNotFoundError):
        return CorruptRunFile(run_dir, name, "does not exist")
    if isinstance(error, NotRegularFile):
        return CorruptRunFile(run_dir, name, error.problem)
    return CorruptRunFile(run_dir, name, f"cannot be read ({error.strerror or error})")


def _bytes(run_dir: Path, name: str) -> bytes:
    """The file's bytes; a missing, special (pipe, device, loop) or oversized file is refused
    without reading it to the end (``read_regular``), empty files too. The reader
    checks them against checksums.json (``_verified``) once it has said what else is wrong."""
    try:
        data = read_regular(Path(run_dir) / name)
    except OSError as error:
        raise unreadable(run_dir, name, error) from None
    if not data.strip():
        raise CorruptRunFile(run_dir, name, "is empty (0 bytes)" if not data else "holds only blank space")
    return data


def _verified(run_dir: Path, name: str, data: bytes, value: Any) -> Any:
    """``value``, read from ``data``, once ``data`` matches checksums.json (``verify``)."""
    verify(run_dir, name, hashlib.sha256(data).hexdigest())
    return value


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """checksums.json (``{"files": {name: sha256}, "writing": {name: sha256}}``), or None for
    a run written before dq recorded checksums (its files are read unchecked)."""
    if not os.path.lexists(Path(run_dir) / CHECKSUMS_JSON):
        return None
    manifest = _json(run_dir, CHECKSUMS_JSON, _bytes(run_dir, CHECKSUMS_JSON))
    if not isinstance(manifest, dict) or not all(isinstance(manifest.get(k, {}), dict) for k in ("files", "writing")):
        raise CorruptRunFile(run_dir, CHECKSUMS_JSON, "is not dq's checksum list (no files object)")
    return manifest


def recorded_digests(run_dir: Path, name: str) -> set[str]:
    """The sha256 digests ``name`` may have: the one recorded when it was written, and one
    being written when a kill came between the rename and the record (dq.rundir.checksums)."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return set()
    return {str(kind[name]) for kind in (manifest.get("files", {}), manifest.get("writing", {})) if name in kind}


def verify(run_dir: Path, name: str, digest: str) -> None:
    """Refuse a file whose sha256 is not what checksums.json recorded for it."""
    expected = recorded_digests(run_dir, name)
    if expected and digest not in expected:
        recorded = min(expected)
        raise CorruptRunFile(
            run_dir,
            name,
            f"has changed since it was written (sha256 {digest[:12]}..., {CHECKSUMS_JSON} "
            f"recorded {recorded[:12]}...): a damaged or altered file",
        )


def sha256_file(path: Path) -> str:
    """``path``'s sha256, read in chunks (a checkpoint is never held twice in memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def require_listed(run_dir: Path, name: str) -> None:
    """A file checksums.json lists must be there: a completed run's metrics.jsonl that was
    deleted is named, though a reader that does not need its lines never reads it."""
    if recorded_digests(run_dir, name) and not os.path.lexists(Path(run_dir) / name):
        raise CorruptRunFile(run_dir, name, f"does not exist, but {CHECKSUMS_JSON} lists it")


def _json(run_dir: Path, name: str, data: bytes, where: str = "") -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CorruptRunFile(run_dir, name, f"{where}is not UTF-8 text: garbage or a foreign file") from None
    except json.JSONDecodeError as error:
        raise CorruptRunFile(run_dir, name, f"{where}is truncated or not JSON ({error})") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def read_object(run_dir: Path, name: str) -> dict[str, Any]:
    """A JSON file of the run that must hold one object (run.json, metrics.json)."""
    data = _bytes(run_dir, name)
    value = _json(run_dir, name, data)
    if not isinstance(value, dict):
        raise CorruptRunFile(run_dir, name, f"holds {_kind(value)}, not a JSON object")
    return _verified(run_dir, name, data, value)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """run.json: an object whose ``status`` is a string (docs/design.md's run-directory contract)."""
    info = read_object(run_dir, RUN_JSON)
    if not isinstance(info.get("status"), str):
        raise CorruptRunFile(run_dir, RUN_JSON, "has no status (running, completed, failed or interrupted)")
    return info


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json: an object of flat metric names; every value a number, a string or null."""
    metrics = read_object(run_dir, METRICS_JSON)
    nested = next((key for key, value in metrics.items() if isinstance(value, dict | list)), None)
    if nested is not None:
        raise CorruptRunFile(run_dir, METRICS_JSON, f"holds {_kind(metrics[nested])} at {nested!r}, not flat metrics")
    return metrics


def run_json_or_none(run_dir: Path) -> dict[str, Any] | None:
    """run.json as ``read_run_json`` reads it, or None when it is missing or broken: a sweep
    deciding what to do with a job's directory (dq.sweep.jobdir) takes a broken record for none."""
    try:
        return read_run_json(run_dir)
    except CorruptRunFile:
        return None


def metrics_or_empty(run_dir: Path) -> dict[str, Any]:
    """metrics.json as ``read_metrics`` reads it, or ``{}`` when it is missing or broken (a
    sweep's list of its jobs shows a broken job without numbers)."""
    try:
        return read_metrics(run_dir)
    except CorruptRunFile:
        return {}


def read_epochs(run_dir: Path, *, missing_ok: bool = True, limit: int | None = None) -> list[dict[str, Any]]:
    """metrics.jsonl's records, one object per line (the first ``limit`` lines when given).

    A run that wrote no epochs (a baseline) has none: ``missing_ok`` reads that as no lines.
    """
    path = Path(run_dir) / METRICS_JSONL
    if missing_ok:
        require_listed(run_dir, METRICS_JSONL)
    if (missing_ok and not os.path.lexists(path)) or limit == 0:
        return []
    data = _bytes(run_dir, METRICS_JSONL)
    lines = data.splitlines()
    records = []
    for number, line in enumerate(lines[:limit] if limit is not None else lines, start=1):
        record = _json(run_dir, METRICS_JSONL, line, where=f"line {number} ")
        if not isinstance(record, dict):
            raise CorruptRunFile(run_dir, METRICS_JSONL, f"line {number} holds {_kind(record)}, not a JSON object")
        records.append(record)
    return _verified(run_dir, METRICS_JSONL, data, records)


def check_epochs(run_dir: Path, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """A completed run's metrics.jsonl (none for a run that logs no epochs), which must hold
    as many epochs as metrics.json says ran: a file cut at a line's end is still caught."""
    epochs = read_epochs(run_dir)
    ran = metrics.get(EPOCHS_RUN)
    if (run_dir / METRICS_JSONL).exists() and isinstance(ran, int) and len(epochs) != ran:
        raise CorruptRunFile(
            run_dir, METRICS_JSONL, f"holds {len(epochs)} epoch line(s), but metrics.json says {ran} epoch(s) ran"
        )
    return epochs


def read_yaml(run_dir: Path, name: str) -> Any:
    """A YAML file of the run as OmegaConf reads it (a DictConfig or a ListConfig)."""
    from omegaconf import OmegaConf

    data = _bytes(run_dir, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptRunFile(run_dir, name, "is not UTF-8 text: garbage or a foreign file") from None
    try:
        value = OmegaConf.create(text)
    except Exception as error:  # PyYAML's and OmegaConf's errors share no base class
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or first_line(str(error))
        raise CorruptRunFile(run_dir, name, f"is truncated or not YAML ({problem}{where})") from None
    return _verified(run_dir, name, data, value)


def read_config(run_dir: Path) -> DictConfig:
    """``.hydra/config.yaml``: a mapping that holds the run-wide nodes (dataset, model, trainer)."""
    from omegaconf import DictConfig

    cfg = read_yaml(run_dir, CONFIG_YAML)
    if not isinstance(cfg, DictConfig):
        raise CorruptRunFile(run_dir, CONFIG_YAML, f"holds {type(cfg).__name__}, not a mapping of config nodes")
    missing = [node for node in CONFIG_NODES if not isinstance(cfg.get(node), DictConfig)]
    if missing:
        raise CorruptRunFile(run_dir, CONFIG_YAML, f"is not a dq run's config (no {missing[0]} node)")
    return cfg


def config_problem(run_dir: Path, error: DQUserError) -> CorruptRunFile:
    """The saved config read, but did not validate: the file's problem, in the same line shape."""
    return CorruptRunFile(run_dir, CONFIG_YAML, f"does not validate ({error})")


def read_checkpoint(
    run_dir: Path,
    name: str,
    required: Sequence[str],
    map_location: Any = "cpu",
    remedy: str = RESTORE,
) -> dict[str, Any]:
    """A checkpoint of the run (``checkpoints/last.pt`` or ``best.pt``), loaded with
    ``weights_only=True``, that holds the ``required`` keys."""
    path = Path(run_dir) / name
    try:
        if regular_file_size(path) == 0:  # stat tells a pipe or a device before anything is opened
            raise CorruptRunFile(run_dir, name, "is empty (0 bytes)")
        state = load_checkpoint(path, map_location=map_location)
    except OSError as error:
        raise CorruptRunFile(run_dir, name, unreadable(run_dir, name, error).problem, remedy) from None
    except CorruptRunFile as error:
        raise CorruptRunFile(run_dir, name, error.problem, remedy) from None
    except DQUserError as error:  # load_checkpoint refused a pickled object: word torch's reason
        raise CorruptRunFile(run_dir, name, _checkpoint_problem(error.__cause__ or error, path), remedy) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, ...
        raise CorruptRunFile(run_dir, name, _checkpoint_problem(error, path), remedy) from None
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CorruptRunFile(run_dir, name, f"is not a dq checkpoint (it has no {missing[0]!r})", remedy)
    try:  # torch never checks its archive's CRCs: a flipped byte in a tensor loads as another weight
        verify(run_dir, name, sha256_file(path))
    except CorruptRunFile as error:
        raise CorruptRunFile(run_dir, name, error.problem, remedy) from None
    return state


PICKLED = "holds pickled Python objects; dq loads only tensors and plain values"


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` starts like a pickle of protocol 2 or later (opcode PROTO)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _checkpoint_problem(error: Exception, path: Path) -> str:
    """What torch's (long, multi-paragraph) complaint about a checkpoint amounts to."""
    text = str(error)
    if "Unsupported operand" in text and _is_pickle(path):  # a plain pickle.dump, not torch.save
        return f"{PICKLED} (a plain pickle file, not a torch checkpoint)"
    # weights_only loading explains itself at length; its own reason follows this marker.
    reason = text.partition("WeightsUnpickler error:")[2].strip() or text
    reason = first_line(reason).split(". ")[0].rstrip(".")
    if "Unsupported global" in reason:
        return f"{PICKLED} ({reason}; checkpoints load with weights_only=True)"
    if isinstance(error, EOFError) and not reason:
        reason = "ended early"
    return f"is truncated or not a torch checkpoint ({type(error).__name__}: {reason})"
