"""Checks of the command line's overrides that Hydra itself lets through, made before
Hydra composes anything.

Hydra accepts a list of choices for any config group (``dataset=[adult,digits]``) and
merges them all: with two schemas that differ it fails with a multi-line merge dump, and
with the same schema the last choice wins silently. It also accepts an override with no
key (``=1``) and then fails deep inside with a ``ValueError``. Both are refused here, in
one line, naming the override and what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dq.config import config_dir
from dq.errors import DQUserError

# Groups that select several choices at once (``regularizer=[fairness,adversarial]``).
LIST_GROUPS = ("regularizer", "logger")
FORMS = "write key=value, +key=value (add), ++key=value (add or set) or ~key (delete)"


def config_groups() -> dict[str, list[str]]:
    """Each config group of ``conf/`` with its choices (the YAML files' names), sorted."""
    root = Path(config_dir())
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }


def overrides_of(argv: Sequence[str]) -> list[str]:
    """The overrides among ``dq-train``'s arguments: what is not a flag nor a flag's value
    (``--cfg job``, ``-cn name``), i.e. the arguments with ``=`` or starting with ``~``."""
    return [arg for arg in argv if not arg.startswith("-") and ("=" in arg or arg.startswith("~"))]


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse what Hydra would turn into a traceback, a multi-line message or a silent choice.

    Raises:
        DQUserError: an override without a key, or a list of choices for a group that takes one.
    """
    groups = config_groups()
    for override in overrides:
        key, equals, value = override.partition("=")
        if not equals:
            continue
        name = key.lstrip("+~")
        if not name.strip():
            raise DQUserError(f"override {override!r} has no key; {FORMS}")
        if name in groups and name not in LIST_GROUPS and value.strip().startswith("["):
            raise DQUserError(
                f"{name}={value} lists several choices but {name} takes one; allowed: {', '.join(groups[name])}"
            )
