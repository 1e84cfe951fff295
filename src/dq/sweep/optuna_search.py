"""``hparams_search=<name>``: an Optuna study driven through its ask/tell API, each trial
run as one Hydra job by whatever ``hydra/launcher`` is selected (basic, joblib, submitit).

Per batch of ``n_jobs`` trials: ask Optuna, compose the jobs (a search space that does not
compose stops here, in one line), launch them, and tell Optuna each job's objective values
from its ``JobOutcome`` metrics, or FAIL when the job failed or a value is missing or not
finite; the study goes on. At the end, ``pareto.csv`` and one best-trial line per objective.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from dq import metric_keys as keys
from dq.errors import DQUserError
from dq.report import degenerate
from dq.sweep.optuna_space import SearchSpace, parse_search_space
from dq.sweep.optuna_study import (
    DEGENERATE,
    OUTCOME,
    RUN_DIR,
    claim,
    counted_trials,
    fail_abandoned_trials,
    open_storage,
    open_study,
)
from dq.sweep.outcome import JobOutcome
from dq.sweep.pareto import best_lines, pareto_trials, write_pareto

if TYPE_CHECKING:
    import optuna
    from hydra.core.utils import JobReturn
    from hydra.plugins.launcher import Launcher
    from optuna.trial import Trial

DIRECTIONS = ("maximize", "minimize")
DEFAULT_OBJECTIVES = {keys.test(keys.ACCURACY): "maximize"}
SAMPLER_EXAMPLE = "{_target_: optuna.samplers.NSGAIISampler, seed: 0}"


@dataclass(frozen=True)
class SearchSettings:
    """``hydra.sweeper``'s keys, checked (see the plugin's DQOptunaSweeperConf)."""

    objectives: dict[str, str]
    sampler: Mapping[str, Any] | None
    n_trials: int
    n_jobs: int
    storage: str | None
    study_name: str
    params: dict[str, Any]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SearchSettings:
        for key in ("objectives", "sampler", "params"):
            if not isinstance(values.get(key) or {}, Mapping):
                raise DQUserError(f"hydra.sweeper.{key} must be a mapping, got {values.get(key)!r}")
        chosen = {key: direction for key, direction in (values.get("objectives") or {}).items() if direction}
        objectives = chosen or DEFAULT_OBJECTIVES
        for key, direction in objectives.items():
            if direction not in DIRECTIONS:
                raise DQUserError(f"hydra.sweeper.objectives.{key} must be maximize or minimize, got {direction!r}")
        settings = cls(
            objectives={str(key): str(direction) for key, direction in objectives.items()},
            sampler=values.get("sampler") or None,
            n_trials=int(values.get("n_trials", 20)),
            n_jobs=int(values.get("n_jobs", 1)),
            storage=values.get("storage"),
            study_name=str(values.get("study_name") or "dq"),
            params=dict(values.get("params") or {}),
        )
        for key in ("n_trials", "n_jobs"):
            if getattr(settings, key) < 1:
                raise DQUserError(f"hydra.sweeper.{key} must be >= 1, got {getattr(settings, key)}")
        return settings

    @property
    def keys(self) -> list[str]:
        return list(self.objectives)

    @property
    def directions(self) -> list[str]:
        return list(self.objectives.values())


def run_search(
    settings: SearchSettings,
    arguments: Sequence[str],
    *,
    launcher: Launcher,
    config: DictConfig,
    check_batch: Callable[[Sequence[Sequence[str]]], None],
) -> None:
    """Run the study until it holds ``n_trials`` counted trials, then write pareto.csv.

    Raises:
        DQUserError: a bad search space, sampler, storage or study; an objective that
            the first successful trial's metrics.json does not hold.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens
    space = parse_search_space([*(f"{key}={value}" for key, value in settings.params.items()), *arguments])
    if not space.distributions:
        raise DQUserError(
            "nothing to search: give hydra.sweeper.params (an hparams_search preset) or a sweep "
            "override such as 'optimizer.lr=tag(log, interval(1e-4,1e-1))'"
        )
    sampler = build_sampler(settings.sampler, config.get("seed"))
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives in it
    try:
        study = open_study(
            open_storage(settings.storage), settings.study_name, settings.keys, settings.directions, sampler
        )
    except DQUserError:
        with suppress(OSError):  # a storage that cannot be opened leaves no empty sweep dir behind
            sweep_dir.rmdir()
        raise
    OmegaConf.save(config, sweep_dir / "multirun.yaml")  # as Hydra's basic sweeper does
    for note in fail_abandoned_trials(study):
        say(note)
    say(
        f"study {study.study_name!r} ({settings.storage or 'in memory'}): {len(study.trials)} trials so far, "
        f"{settings.n_trials} wanted, {settings.n_jobs} at a time; {type(sampler).__name__} over "
        + ", ".join(space.distributions)
    )

    objective_seen = any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    while (todo := settings.n_trials - counted_trials(study)) > 0:
        batch = [study.ask(space.distributions) for _ in range(min(settings.n_jobs, todo))]
        try:
            objective_seen |= run_batch(study, batch, space, settings, launcher, check_batch, objective_seen)
        except BaseException:
            for trial in batch:  # not judged: a restart runs them again
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            raise
    finish(study, settings, sweep_dir)


SAMPLERS_MODULE = "optuna.samplers"


def sampler_names() -> list[str]:
    """The sampler classes ``hydra.sweeper.sampler._target_`` may name: optuna.samplers.<one of these>."""
    import optuna

    return sorted(
        name
        for name in dir(optuna.samplers)
        if isinstance(getattr(optuna.samplers, name), type)
        and issubclass(getattr(optuna.samplers, name), optuna.samplers.BaseSampler)
        and getattr(optuna.samplers, name) is not optuna.samplers.BaseSampler
    )


def _targets(node: Any, where: str) -> list[tuple[str, Any]]:
    """Every ``_target_`` in ``node`` and the nodes below it, with its config path."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, Mapping):
        found += [(f"{where}._target_", node["_target_"])] if "_target_" in node else []
        for key, value in node.items():
            found += _targets(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for number, value in enumerate(node):
            found += _targets(value, f"{where}[{number}]")
    return found


def check_sampler_targets(node: Mapping[str, Any]) -> None:
    """Hydra's ``instantiate`` imports and calls whatever ``_target_`` names, at any depth of
    the node: only optuna's sampler classes may be named at its top, and nothing from
    outside ``optuna.samplers`` below it (a sampler's own parts, e.g. NSGA-II's crossover).

    Raises:
        DQUserError: one line naming the refused target and the allowed ones.
    """
    allowed = sampler_names()
    for where, target in _targets(node, "hydra.sweeper.sampler"):
        module, _, name = str(target).rpartition(".")
        top = where == "hydra.sweeper.sampler._target_"
        if (
            (module != SAMPLERS_MODULE or name not in allowed)
            if top
            else not str(target).startswith(SAMPLERS_MODULE + ".")
        ):
            raise DQUserError(
                f"bad hydra.sweeper.sampler: {where}={target!r} is not allowed; allowed: "
                f"{SAMPLERS_MODULE}.<{'|'.join(allowed)}>; e.g. {SAMPLER_EXAMPLE}"
            )


def build_sampler(node: Mapping[str, Any] | None, seed: Any) -> optuna.samplers.BaseSampler:
    """The sampler ``hydra.sweeper.sampler`` names (a Hydra ``_target_`` node, limited to
    optuna's samplers by ``check_sampler_targets``); unset, TPE seeded with the run's ``seed``."""
    import optuna
    from hydra.utils import instantiate

    if node is None:
        return optuna.samplers.TPESampler(seed=seed if isinstance(seed, int) else None)
    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    check_sampler_targets(plain if isinstance(plain, Mapping) else {})
    try:
        sampler = instantiate(node)
    except Exception as error:
        first = first_line(str(error)).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
        raise DQUserError(
            f"bad hydra.sweeper.sampler: {first or type(error).__name__}; e.g. {SAMPLER_EXAMPLE}"
        ) from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise DQUserError(f"hydra.sweeper.sampler must build an optuna sampler, e.g. {SAMPLER_EXAMPLE}")
    return sampler


def run_batch(
    study: optuna.Study,
    batch: list[Trial],
    space: SearchSpace,
    settings: SearchSettings,
    launcher: Launcher,
    check_batch: Callable[[Sequence[Sequence[str]]], None],
    objective_seen: bool,
) -> bool:
    """Launch one batch and tell Optuna each result; return whether a trial had the objectives."""
    from optuna.trial import TrialState

    overrides = [space.overrides(trial.params) for trial in batch]
    for trial, lines in zip(batch, overrides, strict=True):
        claim(trial)
        say(f"trial {trial.number}: " + " ".join(lines[i] for i, key in enumerate(space.order) if key in trial.params))
    check_batch(overrides)
    returns = launch(launcher, batch, overrides)
    for trial, job in zip(batch, returns, strict=True):
        outcome, error = job_outcome(job)
        if outcome is not None:
            trial.set_user_attr(RUN_DIR, outcome.run_dir)
        if error is None and outcome is not None:
            missing = [key for key in settings.keys if key not in outcome.metrics]
            if missing and not objective_seen:
                written = ", ".join(sorted(outcome.metrics))
                raise DQUserError(
                    f"objective {missing[0]!r} is not a metric this run writes; its metrics.json has: {written}"
                )
            error = f"metrics.json has no {missing[0]}" if missing else None
        values = None
        if error is None and outcome is not None:
            values = [float(outcome.metrics[key]) for key in settings.keys]
            objective_seen = True
            bad = [key for key, value in zip(settings.keys, values, strict=True) if not math.isfinite(value)]
            error = f"{bad[0]} is {outcome.metrics[bad[0]]}" if bad else None
        if error is None:
            trial.set_user_attr(OUTCOME, "completed")
            marks = degenerate.flags(outcome.metrics)  # kept off the front and the best (dq.sweep.pareto)
            if marks:
                trial.set_user_attr(DEGENERATE, marks)
            study.tell(trial, values)
            shown = " ".join(f"{key}={value:.4g}" for key, value in zip(settings.keys, values, strict=True))
            say(f"trial {trial.number} complete: {shown}" + (f" (DEGENERATE: {', '.join(marks)})" if marks else ""))
        else:
            trial.set_user_attr(OUTCOME, f"failed: {error}")
            study.tell(trial, state=TrialState.FAIL)
            say(f"trial {trial.number} FAIL: {error}")
    return objective_seen


def launch(launcher: Launcher, batch: Sequence[Trial], overrides: Sequence[Sequence[str]]) -> list[JobReturn]:
    """Run the batch's jobs, each numbered by its trial number, so job ``3`` is trial 3 and
    no two jobs of the study share a directory (a study shared with another process can
    make a batch's numbers non-consecutive: each consecutive run is one launch then)."""
    returns: list[JobReturn] = []
    start = 0
    for end in range(1, len(batch) + 1):
        if end == len(batch) or batch[end].number != batch[end - 1].number + 1:
            returns += launcher.launch(overrides[start:end], initial_job_idx=batch[start].number)
            start = end
    return returns


def job_outcome(job: JobReturn) -> tuple[JobOutcome | None, str | None]:
    """The job's outcome and, when it failed, its error in one line."""
    try:
        value = job.return_value
    except Exception as error:  # Hydra keeps the task function's exception here
        return None, first_line(f"{type(error).__name__}: {error}")
    if not isinstance(value, JobOutcome):
        return None, f"the job returned {type(value).__name__}, not a dq JobOutcome"
    if not value.succeeded:
        return value, value.error or str(value.status)
    return value, None


def finish(study: optuna.Study, settings: SearchSettings, sweep_dir: Path) -> None:
    """pareto.csv and the best lines; exit 1 when no trial of the study completed."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if not complete:
        print(
            f"dq-train: error: no trial of study {study.study_name!r} completed ({len(failed)} failed)", file=sys.stderr
        )
        sys.exit(1)
    path = write_pareto(study, settings.keys, sweep_dir)
    say(
        f"{len(complete)} trials complete, {len(failed)} failed; "
        f"{len(pareto_trials(study))} on the Pareto front: {path}"
    )
    for line in best_lines(study, settings.keys, settings.directions):
        say(line)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


def say(line: str) -> None:
    print(line, flush=True)
