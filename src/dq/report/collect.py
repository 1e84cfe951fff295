"""Finding runs under paths and reading each one back as a ``RunResult``.

A run directory is one that holds ``run.json`` (docs/design.md's output contract), or files
only a run writes (metrics, checkpoints) without it. Whatever is wrong with one (a failed
status, a missing, truncated or foreign file: dq.rundir.read names it) is recorded on its
``RunResult`` as ``problem``, so a report lists it instead of failing on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dq.errors import DQUserError
from dq.rundir.layout import CHECKPOINTS, COMPRESSED, HYDRA_DIR, METRICS_JSON, METRICS_JSONL, RUN_JSON
from dq.rundir.read import (
    CorruptRunFile,
    check_epochs,
    read_config,
    read_epochs,
    read_metrics,
    read_run_json,
    read_yaml,
)

# Overrides that say how or where a run ran, not what it computed: never a grouping key.
PLACEMENT_KEYS = ("seed", "launcher", "resume", "hydra", "experiment_name")
BROKEN = "broken"  # a run directory whose files cannot be read
# Files only a run writes: a directory with one of them but no run.json lost its run.json
# (listed as broken). A directory with only .hydra/ is a job killed before it started.
RUN_MARKS = frozenset({METRICS_JSON, METRICS_JSONL, CHECKPOINTS})


@dataclass
class RunResult:
    """One run directory as a report sees it.

    Attributes:
        run_dir: the directory.
        status: run.json's status (completed, failed, interrupted, running) or ``broken``.
        overrides: the command-line overrides that made it (run.json, else .hydra/overrides.yaml).
        seed: the run's seed (None when unknown).
        metrics: metrics.json's flat keys (empty unless completed).
        info: run.json as written.
        problem: why the run is not usable (its error line, or what could not be read); None when fine.
    """

    run_dir: Path
    status: str
    overrides: list[str] = field(default_factory=list)
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    _config: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _curves: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.problem is None

    def config(self) -> dict[str, Any]:
        """The composed config (.hydra/config.yaml) as plain containers; empty when absent
        or broken (a completed run's was read by ``read_run``, or the run is ``broken``).
        Read once: tables, figures, the page and the card all ask for it (treat it as read-only)."""
        if self._config is None:
            from omegaconf import OmegaConf

            try:
                loaded = OmegaConf.to_container(read_config(self.run_dir), resolve=False)
            except CorruptRunFile:
                loaded = {}
            self._config = loaded  # type: ignore[assignment]
        return self._config  # type: ignore[return-value]

    def curves(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one dict per epoch (empty when absent or unreadable). Read once: a
        completed run's was read (and counted) by ``read_run``."""
        if self._curves is None:
            try:
                self._curves = read_epochs(self.run_dir)
            except CorruptRunFile:
                self._curves = []
        return self._curves

    def override_values(self) -> dict[str, str]:
        """``{key: value}`` of the overrides, keys without their ``+``/``++``/``~`` prefix."""
        return {override_key(item): item.partition("=")[2] for item in self.overrides}


def override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def is_placement(key: str) -> bool:
    """Whether an override key is a placement key or inside one (``hydra.sweep.dir``,
    ``hydra/launcher``: a config group is written with a slash)."""
    return any(key == name or key.startswith((name + ".", name + "/")) for name in PLACEMENT_KEYS)


def group_overrides(run: RunResult) -> tuple[str, ...]:
    """The overrides that define a run's group: all but the seed and placement keys, sorted."""
    return tuple(sorted(item for item in run.overrides if not is_placement(override_key(item))))


def _recorded_overrides(run_dir: Path) -> list[str]:
    path = run_dir / HYDRA_DIR / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(item) for item in read_yaml(run_dir, f"{HYDRA_DIR}/overrides.yaml")]


def read_run(run_dir: Path) -> RunResult:
    """Read ``run_dir``; never raises for a bad run.

    Every run: run.json. A completed one also: metrics.json, .hydra/config.yaml (the tables
    group by it) and metrics.jsonl where there is one (the curves). A file among these that
    is missing or broken makes the run ``broken``, with the file's line (dq.rundir.read) as
    its problem; the checkpoints are not read (a report does not need them).
    """
    run_dir = Path(run_dir)
    try:
        info = read_run_json(run_dir)
    except CorruptRunFile as error:
        return RunResult(run_dir, BROKEN, problem=error.short)
    try:
        overrides = info.get("overrides") or _recorded_overrides(run_dir)
    except CorruptRunFile as error:
        overrides, info["error"] = [], info.get("error") or error.short
    run = RunResult(run_dir, str(info["status"]), [str(item) for item in overrides], info.get("seed"), info=info)
    if run.status != "completed":
        run.problem = info.get("error") or f"status {run.status}"
        return run
    try:
        run.metrics = read_metrics(run_dir)
        config = read_config(run_dir)
        run._curves = check_epochs(run_dir, run.metrics)
    except CorruptRunFile as error:
        run.status, run.problem = BROKEN, error.short
        return run
    from omegaconf import OmegaConf

    run._config = OmegaConf.to_container(config, resolve=False)  # type: ignore[assignment]
    return run


def holds_run(directory: Path) -> bool:
    """Whether ``directory`` holds a run: its run.json, or files only a run writes (then
    its run.json was lost: the run is broken). Only ``.hydra/``: a job that never started."""
    return any((Path(directory) / name).exists() for name in (RUN_JSON, *RUN_MARKS))


def find_runs(paths: Iterable[str | Path]) -> list[RunResult]:
    """Every run directory under ``paths`` (a path may itself be a run), sorted by path.

    Raises:
        DQUserError: when a path does not exist.
    """
    found: list[RunResult] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DQUserError(f"no such file or directory: {path}")
        for root, dirs, files in os.walk(path):
            marked = RUN_JSON in files or bool(RUN_MARKS.intersection([*files, *dirs]))
            # A run's compressed/ holds its compressed copies (dq-compress): their numbers are the
            # run's own compress/... keys, not runs of the sweep; name that folder to see them.
            skipped = {CHECKPOINTS, COMPRESSED} if marked else {CHECKPOINTS}
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skipped)
            if marked:
                found.append(read_run(Path(root)))
    return sorted(found, key=lambda run: str(run.run_dir))
