"""What an override may reach beyond the run's own schema: Hydra's settings, config
groups and ``_target_`` (issue 21). Checked before Hydra composes anything, because Hydra
acts on some of them while it composes, before dq's task sees the config: it instantiates
``hydra.callbacks``, the launcher and the sweeper from their ``_target_``, loads a group
choice's YAML file from wherever its name points (``+experiment=../../x``), configures
logging from ``hydra.job_logging`` (whose dictConfig can name classes to build) and writes
``hydra.output_subdir`` and ``<hydra.job.name>.log`` where they point.

So an override may set, of Hydra's own settings, only what dq's launchers, sweepers and
run directories need (``HYDRA_KEYS``); a group choice is a plain name inside ``conf/``;
and a ``_target_`` is one of the classes dq ships presets for (``TARGETS``) or, under
``hydra.sweeper.sampler``, an Optuna sampler (checked again where it is built).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from dq.errors import DQUserError

# Hydra's settings an override may change, and why each one:
# - hydra.run.dir, hydra.sweep.dir: where a run or a sweep writes (README's three uses, docs/guides/sweeps.md);
# - hydra.launcher.<key>, hydra.sweeper.<key>: the settings of the launchers and sweepers dq
#   ships presets for (conf/launcher/, conf/hparams_search/), their schemas' own keys only;
# - hydra.verbose: Hydra's debug logging, for a bug report.
# Not hydra.sweep.subdir (dq's sweep summary, requeue and resume find a job at
# <sweep dir>/<job number>: another subdir left a finished job counted as not started),
# hydra.job.chdir (dq resolves the paths of a command line, such as
# regularizer.lora.init_from, from where it was started), hydra.output_subdir (dq reads
# .hydra/ back), hydra.job.name, hydra.callbacks, hydra.job_logging, hydra.job.env_set, ...
PLAIN_HYDRA_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.verbose")
# Config groups of Hydra's own an override may choose: a launcher plugin, a sweeper plugin.
# Each with the plugins whose _target_ is in TARGETS (those conf/launcher/ and conf/hparams_search/ select).
HYDRA_GROUPS = {
    "hydra/launcher": ["basic", "dq_processes", "joblib", "submitit_local", "submitit_slurm"],
    "hydra/sweeper": ["basic", "dq_optuna"],
}
# Keys of a launcher's schema that run code or name code: submitit's `setup` lines go into
# the batch script as shell commands.
CODE_KEYS = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_", "setup")
# Every _target_ a config may hold: dq's callbacks (the sweep's and the run directory's claim), the launchers and sweepers of
# conf/launcher/ and conf/hparams_search/ (Hydra's basic ones included), and, under
# hydra.sweeper.sampler only, optuna.samplers.<Name> (dq.sweep.optuna_search builds it).
TARGETS = (
    "dq.sweep.callback.SweepSummary",
    "dq.rundir.claim.RunClaim",
    "hydra_plugins.dq_process_launcher.launcher.DQProcessLauncher",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.dq_optuna_sweeper.sweeper.DQOptunaSweeper",
)
SAMPLER_KEY = "hydra.sweeper.sampler"
SAMPLER_PREFIX = "optuna.samplers."
# Groups whose default is null (conf/config.yaml): `compress=null` and `hparams_search=null` mean none.
NULLABLE_GROUPS = ("compress", "hparams_search")
# A choice is a file name inside its group's folder: no '/', no '..', not absolute, not hidden.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")


def allowed_hydra_keys() -> str:
    return "hydra.run.dir, hydra.sweep.dir, hydra.launcher.<key>, hydra.sweeper.<key>, hydra.verbose"


def values_of(override: Override) -> list[Any]:
    """The values an override sets: one, or each of a sweep's (``a,b``, ``choice(a,b)``);
    a range's or an interval's ends (numbers)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    if isinstance(value, RangeSweep | IntervalSweep):
        return [value.start, value.stop if isinstance(value, RangeSweep) else value.end]
    return [] if override.is_sweep_override() else [value]  # a glob picks among the group's own files


def targets_in(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every ``_target_`` in ``value`` (nested dicts and lists) as (its key path, its value)."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key == "_target_":
                yield where, item
            else:
                yield from targets_in(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from targets_in(item, f"{path}[{index}]")


def check_target(where: str, target: Any) -> None:
    """Refuse a ``_target_`` that dq does not ship (``where``: its key path)."""
    if where.startswith(SAMPLER_KEY + ".") and isinstance(target, str) and target.startswith(SAMPLER_PREFIX):
        return  # an Optuna sampler (or one of its parts): dq.sweep.optuna_search checks the name
    if target not in TARGETS or not where.startswith(("hydra.launcher.", "hydra.sweeper.", "hydra.callbacks.")):
        raise DQUserError(
            f"{where}={target!r} names code to run; a _target_ may only be {SAMPLER_PREFIX}<Name> under "
            f"{SAMPLER_KEY} (conf/launcher/ and conf/hparams_search/ set the others)"
        )


def check_group_choice(override: Override, choices: list[str]) -> None:
    """A group's choice: a plain name (never null, except for a group whose default is none)."""
    group = override.key_or_group
    allowed = ", ".join(choices or HYDRA_GROUPS.get(group, []))
    for value in values_of(override):
        names = value if isinstance(value, list) else [value]
        if value is None and group not in NULLABLE_GROUPS and not override.is_delete():
            empty = f" ({group}=[] for none)" if group in ("regularizer", "logger") else ""
            raise DQUserError(f"{group}=null: {group} needs a choice{empty}; allowed: {allowed}")
        for name in names:
            if group in HYDRA_GROUPS and name not in HYDRA_GROUPS[group]:
                raise DQUserError(
                    f"{group}={name!r}: dq runs only the plugins it ships presets for; allowed: {allowed}"
                )
            if name is not None and not (isinstance(name, str) and PLAIN_NAME.fullmatch(name)):
                raise DQUserError(
                    f"{group}={str(name)[:100]!r} is not a plain name (no '/', '..' nor a path: a choice is a file "
                    f"of conf/{group}/); allowed: {allowed}"
                )


def check_hydra_key(override: Override, launcher_keys: set[str], sweeper_keys: set[str]) -> None:
    """A ``hydra.*`` override: set (never added nor deleted), on the allow-list, no code."""
    key = override.key_or_group
    forms_ok = not (override.is_add() or override.is_force_add() or override.is_delete())
    leaf = key.split(".")[2] if key.count(".") >= 2 else ""
    known = (
        (key.startswith("hydra.launcher.") and leaf in launcher_keys)
        or (key.startswith("hydra.sweeper.") and leaf in sweeper_keys)
        or key in PLAIN_HYDRA_KEYS
    )
    if not forms_ok or not known:
        raise DQUserError(
            f"override {override.input_line[:200]!r} may not change Hydra's settings; allowed: {allowed_hydra_keys()} "
            "(the launcher's and sweeper's own keys, set with key=value: not +, ++ nor ~)"
        )
    for value in values_of(override):
        if key.endswith("._target_"):
            check_target(key, value)
        for where, target in targets_in(value, key):
            check_target(where, target)
