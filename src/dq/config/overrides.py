"""Checks of the command line's overrides that Hydra itself lets through, made before
Hydra composes anything.

Hydra accepts a list of choices for any config group (``dataset=[adult,digits]``) and
merges them all: with two schemas that differ it fails with a multi-line merge dump, and
with the same schema the last choice wins silently. It also accepts an override with no
key (``=1``) and then fails deep inside with a ``ValueError``. Both are refused here, in
one line, naming the override and what is allowed; so is what reaches past the run's
schema (Hydra's settings, a group choice that is a path, a ``_target_``:
dq.config.hydra_overrides).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException

from dq.config import config_dir
from dq.config.hydra_overrides import CODE_KEYS, HYDRA_GROUPS, check_group_choice, check_hydra_key, values_of
from dq.config.run import check_experiment_name
from dq.config.validation import interpolation_hint, omegaconf_message
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
    for parsed in parse(overrides):
        check_parsed(parsed, groups)


def parse(overrides: Sequence[str]) -> list[Override]:
    """Hydra's own parse of ``overrides``; a number it cannot hold (a 5,000-digit seed is past
    Python's 4,300-digit limit for reading an integer) refused in one line."""
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException:
        raise
    except ValueError as error:
        raise DQUserError(f"cannot read the command line's overrides: {str(error).split(';')[0]}") from error


@functools.cache
def plugin_keys(*schemas: str) -> set[str]:
    """The keys of the launcher or sweeper schemas named ``module:Class`` (those installed),
    less the keys that name code (``_target_``, submitit's ``setup``)."""
    keys: set[str] = set()
    for name in schemas:
        module, _, cls = name.partition(":")
        try:
            keys |= {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), cls))}
        except ImportError:
            continue
    return keys - set(CODE_KEYS)


LAUNCHER_SCHEMAS = (
    "hydra_plugins.hydra_joblib_launcher.config:JobLibLauncherConf",
    "hydra_plugins.hydra_submitit_launcher.config:SlurmQueueConf",
    "hydra_plugins.hydra_submitit_launcher.config:LocalQueueConf",
)
SWEEPER_SCHEMAS = (
    "hydra._internal.core_plugins.basic_sweeper:BasicSweeperConf",
    "hydra_plugins.dq_optuna_sweeper.sweeper:DQOptunaSweeperConf",
)


def check_parsed(override: Override, groups: dict[str, list[str]]) -> None:
    """One parsed override against what may reach past the run's schema (dq.config.hydra_overrides):
    Hydra's settings, a group's choice, a _target_; and an experiment_name Hydra would make a
    folder of before dq's checks run. A sweep's parameters (hydra.sweeper.params) are checked
    as the overrides they become."""
    key = override.key_or_group
    if key == "hydra" or key.startswith("hydra.") or (key.startswith("hydra/") and key not in HYDRA_GROUPS):
        check_hydra_key(override, plugin_keys(*LAUNCHER_SCHEMAS), plugin_keys(*SWEEPER_SCHEMAS))
        params = override.value() if key == "hydra.sweeper.params" else None
        if key.startswith("hydra.sweeper.params."):
            params = {key.removeprefix("hydra.sweeper.params."): str(override.input_line).partition("=")[2]}
        for name, value in (params or {}).items() if isinstance(params, dict) else []:
            for inner in parse([f"{name}={value}"]):
                check_parsed(inner, groups)
    elif key in groups or key in HYDRA_GROUPS or "/" in key:
        if key not in groups and key not in HYDRA_GROUPS:
            raise DQUserError(f"unknown config group {key!r}; groups: {', '.join([*groups, *HYDRA_GROUPS])}")
        check_group_choice(override, groups.get(key, []))
    elif "_target_" in key or "_target_" in str(override.value()):
        raise DQUserError(
            f"override {override.input_line[:200]!r} names code to run: a _target_ may be set only under "
            "hydra.sweeper.sampler (optuna.samplers.<Name>)"
        )
    elif key == "experiment_name":
        for value in values_of(override):
            if isinstance(value, str) and "${" not in value:  # an interpolation is checked once resolved
                check_experiment_name(value)
    for value in values_of(override):
        check_resolvers(key, value)


def check_resolvers(key: str, value: object) -> None:
    """A value's ``${resolver:...}`` resolved on its own, before Hydra: Hydra resolves some
    (the run directory's experiment_name, a sweep's seed) outside dq's task, where a failure
    is a traceback or Hydra's extra "Error executing job" line. A reference to a config key
    (``${seed}``) and Hydra's ``${hydra:...}`` resolve only once composed: left for then."""
    if not isinstance(value, str) or "${" not in value or "${hydra:" in value:
        return
    from hydra.core.utils import setup_globals  # registers ${now:} as Hydra's start would

    setup_globals()
    try:
        OmegaConf.to_container(OmegaConf.create({"value": value}), resolve=True)
    except InterpolationKeyError:
        return
    except OmegaConfBaseException as error:
        raise DQUserError(f"bad value for {key}: {omegaconf_message(error)}{interpolation_hint(error)}") from error
