"""A run or sweep directory is claimed before Hydra writes anything into it.

Hydra makes ``hydra.run.dir`` and writes ``.hydra/`` (and a sweep's ``multirun.yaml``)
before dq's task function runs, so a check there comes too late: a finished run would
already have a new ``.hydra/config.yaml``, a live one a config it was not started with.
Hydra calls its callbacks' ``on_run_start`` / ``on_multirun_start`` before that, so the
claim is made there (``RunClaim``, ``hydra.callbacks`` in conf/config.yaml, for a run;
``dq.sweep.callback.hold_sweep`` for a sweep).

A directory may be claimed when it is absent, empty, or holds only what a run refused or
killed before it wrote run.json leaves (Hydra's ``.hydra/`` and log, the lock file): a
requeued SLURM job starts its run there again. Anything else (a run, a sweep, someone's
files) is refused in one line, and nothing in it is touched. The claim takes the
directory's lock (``dq.rundir.lock``) and looks again under it, so of two processes racing for
one new directory one wins and the other is refused; the lock is held to the end of the
run. Resuming is ``resume=``'s business (dq.runner), re-running the same sweep
``dq.sweep``'s.

The other way round, a run refused before it trained (a bad config, missing data) gives
its directory back (``discard_unstarted``), so nothing that looks like a result is left.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from dq.errors import DQUserError
from dq.rundir.layout import HYDRA_DIR, MULTIRUN_YAML, RUN_JSON, SWEEP_JSON
from dq.rundir.lock import LOCK_FILE, DirectoryBusy, DirectoryLock, holder_text
from dq.rundir.read import read_json


class ClaimRefused(BaseException):
    """A directory this invocation may not write; ``error`` is the one line for the user.

    Not an ``Exception``: Hydra turns a callback's exceptions into warnings and goes on,
    so this passes through Hydra to ``dq.cli``, which prints it (exit 2)."""

    def __init__(self, error: DQUserError) -> None:
        super().__init__(str(error))
        self.error = error


def leftover_of_unstarted(name: str) -> bool:
    """Whether a directory entry is one that a run leaves before its run.json: Hydra's
    ``.hydra/`` and ``*.log``, and the lock file."""
    return name in (HYDRA_DIR, LOCK_FILE) or name.endswith(".log")


def discard_unstarted(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but Hydra's own files.

    A run rejected before training (bad config, missing data) must not leave a
    directory that looks like a result.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    # The lock file too: a run claims its directory (``claim_run``) before Hydra writes there.
    leftovers = [p for p in run_dir.iterdir() if p.name != HYDRA_DIR and p.suffix not in (".log", ".lock")]
    if not leftovers:
        shutil.rmtree(run_dir, ignore_errors=True)
        with suppress(OSError):  # the experiment folder too, when this was its only run
            run_dir.parent.rmdir()


def held_by_other(directory: Path) -> str | None:
    """``pid ... on host ... since ...`` when a live process holds ``directory``'s lock,
    else None. Only looks: it creates and writes nothing (a shared lock, dropped at once)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder_text(directory / LOCK_FILE)
    finally:
        os.close(fd)  # also drops the shared lock
    return None


def _entries(directory: Path, key: str) -> list[str] | None:
    """The names in ``directory``; None when it does not exist.

    Raises:
        DQUserError: it exists but is not a directory, or cannot be read.
    """
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _unusable(key, directory, error) from None


def _unusable(key: str, directory: Path, error: OSError) -> DQUserError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno == errno.ENOTDIR:
        reason = "it, or a folder above it, is a file, not a directory"
    return DQUserError(f"cannot use {key}={directory}: {reason}; give a directory that dq-train may create or use")


def recorded_sweep(directory: Path) -> list[str] | None:
    """The task overrides of the sweep that ``directory``'s multirun.yaml records; None when
    there is none or it cannot be read."""
    try:
        recorded = OmegaConf.select(OmegaConf.load(directory / MULTIRUN_YAML), "hydra.overrides.task")
    except (OSError, ValueError, OmegaConfBaseException):
        return None
    return [str(item) for item in recorded] if recorded is not None else None


def _what_it_holds(directory: Path, names: list[str]) -> str:
    """``a run (run.json: completed)``, ``a sweep (overrides: ...)`` or ``other files (a, b, ...)``."""
    if RUN_JSON in names:
        try:
            status = read_json(directory / RUN_JSON).get("status")
        except (OSError, ValueError, AttributeError):
            status = "unreadable"
        return f"a run (run.json: {status})"
    if MULTIRUN_YAML in names or SWEEP_JSON in names:
        recorded = recorded_sweep(directory)
        return f"a sweep (overrides: {' '.join(recorded) or 'none'})" if recorded is not None else "a sweep"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"other files ({shown})"


def refuse_if_taken(directory: Path, key: str, what: str, same: Callable[[Path], bool] | None = None) -> None:
    """Refuse ``directory`` when a live process holds it or it holds more than an unstarted
    run's leftovers, unless ``same(directory)`` says it holds what this invocation goes on
    with (a re-run of the same sweep); touches nothing.

    Raises:
        DQUserError: one line naming the directory and why (and how to go on).
    """
    names = _entries(directory, key)
    if names is None:
        return
    holder = held_by_other(directory) if not DirectoryLock(directory, what).held_here() else None
    if holder is not None:
        raise DirectoryBusy(f"{what} {directory}: it is running in {holder}")
    taken = [name for name in names if not leftover_of_unstarted(name)]
    if not taken or (same is not None and same(directory)):
        return
    held = _what_it_holds(directory, taken)
    hint = ""
    if held.startswith("a run"):
        hint = f"continue it with dq-train resume={directory}, or "
    elif held.startswith("a sweep ("):
        hint = "finish it with dq-train -m and those same overrides, or "
    raise DQUserError(f"{what} {directory}: it already holds {held}; {hint}choose a new {key}")


def claim(directory: Path, key: str, what: str, same: Callable[[Path], bool] | None = None) -> DirectoryLock:
    """Make ``directory`` (a new, empty or unstarted one, or what ``same`` accepts) this
    process's: look, create it, lock it, look again under the lock. The caller holds the
    returned lock to its end.

    Raises:
        DQUserError: ``directory`` is taken (``refuse_if_taken``), busy, or cannot be a
            directory (a file on its path, /proc, a name too long): one line.
    """
    refuse_if_taken(directory, key, what, same)
    lock = DirectoryLock(directory, what)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as error:
        raise _unusable(key, directory, error) from None
    try:
        refuse_if_taken(directory, key, what, same)  # another process finished its run here meanwhile
    except BaseException:
        lock.release()
        raise
    return lock


def output_dir_of(config: DictConfig, key: str) -> Path:
    """This invocation's ``hydra.run.dir`` or ``hydra.sweep.dir`` (``key``), absolute, as
    Hydra will resolve it (``${dq_stamp:}`` is cached: Hydra gets the same name).

    Raises:
        DQUserError: it is empty (Hydra would write into the current directory).
    """
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(config)  # as Hydra's run_job does next: ${hydra:...} resolves
    try:
        text = str(OmegaConf.select(config, key) or "")
    finally:
        hydra_config.cfg = before  # run_job puts back what it finds: a sweep leaves none behind
    if not text.strip():
        raise DQUserError(f"{key} is empty; give it a directory of its own (by default under outputs/)")
    return Path(os.path.abspath(text))


def claim_run(config: DictConfig) -> DirectoryLock | None:
    """Claim the directory Hydra is about to write for a single run. A ``resume=`` into
    its own run directory claims nothing (``dq.runner`` locks it) and keeps Hydra from
    rewriting the run's saved ``.hydra/`` with the command line's config."""
    run_dir = output_dir_of(config, "hydra.run.dir")
    resume = config.get("resume")
    if resume and Path(os.path.abspath(str(resume))) == run_dir:
        holder = held_by_other(run_dir)
        if holder is not None:  # before Hydra opens its log there
            raise DirectoryBusy(f"cannot resume {run_dir}: it is running in {holder}")
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.output_subdir = None
        return None
    return claim(run_dir, "hydra.run.dir", "cannot run in")


_claimed: DirectoryLock | None = None


class RunClaim(Callback):
    """Claims a single run's directory before Hydra writes into it (``claim_run``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _claimed
        self.on_run_end(config)  # an earlier run in this process that stopped without on_run_end
        try:
            _claimed = claim_run(config)
        except DQUserError as error:
            raise ClaimRefused(error) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _claimed
        if _claimed is not None:
            _claimed.release()
            _claimed = None
