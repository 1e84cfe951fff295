"""The Optuna study a search shares with every process that searches it: the storage it
lives in, its objectives, and the trials a dead process left behind.

Storage URLs: an SQLAlchemy URL (``sqlite:///<file>``, the default under the sweep dir;
``postgresql://...`` or ``mysql://...`` for several machines), ``journal:<file>`` for
Optuna's journal file storage (an append-only log that several processes, also on
several machines over a shared file system, can write), or none (in memory).
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dq.errors import DQUserError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

JOURNAL_PREFIX = "journal:"
STORAGE_FORMS = "sqlite:///<file>, journal:<file>, or an SQLAlchemy database URL (postgresql://..., mysql://...)"

# Trial user attributes: who runs a trial (to tell a dead owner from a live one on a
# restart), and the outcome a dq sweep told Optuna (trials without one do not count).
OWNER_HOST = "dq.host"
OWNER_PID = "dq.pid"
OUTCOME = "dq.outcome"
RUN_DIR = "dq.run_dir"
DEGENERATE = "dq.degenerate"  # the marks of dq.report.degenerate a completed trial earned


def open_storage(url: str | None) -> BaseStorage | None:
    """The storage ``url`` names, opened now so that a bad one fails before any trial.

    Raises:
        DQUserError: the URL cannot be opened (bad form, missing driver, unreachable, a
            directory that does not exist).
    """
    if url is None:
        return None
    import optuna

    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix(JOURNAL_PREFIX))
            if not path.parent.is_dir():
                raise FileNotFoundError(f"no directory {path.parent}")
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # whatever the driver raises: say it in one line
        message = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise DQUserError(f"cannot open storage {url!r}: {message}; allowed: {STORAGE_FORMS}") from None


def open_study(
    storage: BaseStorage | None,
    study_name: str,
    objectives: Sequence[str],
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
) -> optuna.Study:
    """Create the study, or load it when ``storage`` holds one of that name: then its
    objectives must be the same (Optuna itself would silently keep the old directions)."""
    import optuna

    study = optuna.create_study(
        storage=storage, study_name=study_name, directions=list(directions), sampler=sampler, load_if_exists=True
    )
    wanted = list(zip(objectives, directions, strict=True))
    have_directions = [d.name.lower() for d in study.directions]
    names = study.metric_names
    if have_directions != list(directions) or (names is not None and names != list(objectives)):
        have = list(zip(names or ["?"] * len(have_directions), have_directions, strict=True))
        raise DQUserError(
            f"study {study_name!r} in this storage optimises {_pairs(have)}, not {_pairs(wanted)}; "
            "set hydra.sweeper.study_name to start another study"
        )
    if names is None:  # recorded in the study, so a restart with other objectives is caught
        with warnings.catch_warnings():  # metric names are "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives))
    return study


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{key} ({direction})" for key, direction in pairs)


def claim(trial: Trial) -> None:
    """Record which process runs ``trial``, so a restart can tell whether it is still alive."""
    trial.set_user_attr(OWNER_HOST, socket.gethostname())
    trial.set_user_attr(OWNER_PID, os.getpid())


def owner_is_dead(trial: FrozenTrial) -> bool | None:
    """True when the process that runs ``trial`` is gone (or recorded none), False when it
    is alive, None when it runs on another host and this one cannot tell."""
    host, pid = trial.user_attrs.get(OWNER_HOST), trial.user_attrs.get(OWNER_PID)
    if host is None or pid is None:
        return True
    if host != socket.gethostname():
        return None
    if pid == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fail_abandoned_trials(study: optuna.Study) -> list[str]:
    """Mark FAIL the trials a dead process left RUNNING; return one console line per trial
    handled (failed, or left alone because its host is another machine)."""
    from optuna.trial import TrialState

    notes = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        dead = owner_is_dead(trial)
        if dead:
            owner = f"pid {trial.user_attrs[OWNER_PID]}" if OWNER_PID in trial.user_attrs else "no recorded process"
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            notes.append(f"trial {trial.number} was left RUNNING by a dead process ({owner}): marked FAIL")
        elif dead is None:
            notes.append(
                f"trial {trial.number} is RUNNING on host {trial.user_attrs[OWNER_HOST]}: left as it is "
                "(if its process is gone, mark it failed with optuna's study.tell)"
            )
    return notes


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: all but the failures no dq sweep judged
    (left by a dead or interrupted process), which a restart runs again."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in trials if t.state != TrialState.FAIL or OUTCOME in t.user_attrs)
