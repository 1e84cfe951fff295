"""Finding runs under paths and reading each one back as a ``RunResult``.

A run directory is one that holds ``run.json`` (DESIGN.md's output contract). Whatever is
wrong with one (no metrics.json, unreadable JSON, a failed status) is recorded on its
``RunResult`` as ``problem``, so a report lists it instead of failing on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dq.errors import DQUserError
from dq.outputs import HYDRA_DIR, METRICS_JSON, METRICS_JSONL, RUN_JSON, read_json, read_jsonl

# Overrides that say how or where a run ran, not what it computed: never a grouping key.
PLACEMENT_KEYS = ("seed", "launcher", "resume", "hydra", "experiment_name")
BROKEN = "broken"  # a run directory whose files cannot be read


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

    @property
    def ok(self) -> bool:
        return self.status == "completed" and self.problem is None

    def config(self) -> dict[str, Any]:
        """The composed config (.hydra/config.yaml) as plain containers; empty when absent.
        Read once: tables, figures, the page and the card all ask for it (treat it as read-only)."""
        if self._config is None:
            path = self.run_dir / HYDRA_DIR / "config.yaml"
            from omegaconf import OmegaConf

            loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else {}
            self._config = loaded  # type: ignore[assignment]
        return self._config  # type: ignore[return-value]

    def curves(self) -> list[dict[str, Any]]:
        """metrics.jsonl: one dict per epoch (empty when absent or unreadable)."""
        try:
            return read_jsonl(self.run_dir / METRICS_JSONL)
        except (OSError, ValueError):
            return []

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
    from omegaconf import OmegaConf

    return [str(item) for item in OmegaConf.load(path)]


def read_run(run_dir: Path) -> RunResult:
    """Read ``run_dir`` (which holds run.json); never raises for a bad run."""
    run_dir = Path(run_dir)
    try:
        info = read_json(run_dir / RUN_JSON)
    except (OSError, ValueError) as error:
        return RunResult(run_dir, BROKEN, problem=f"run.json unreadable: {error}")
    try:
        overrides = info.get("overrides") or _recorded_overrides(run_dir)
    except Exception as error:  # a corrupt overrides.yaml: OmegaConf raises several kinds
        overrides, info["error"] = [], info.get("error") or f"overrides.yaml unreadable: {error}"
    run = RunResult(run_dir, str(info.get("status", BROKEN)), list(overrides), info.get("seed"), info=info)
    if run.status != "completed":
        run.problem = info.get("error") or f"status {run.status}"
        return run
    try:
        run.metrics = read_json(run_dir / METRICS_JSON)
    except (OSError, ValueError) as error:
        run.status, run.problem = BROKEN, f"metrics.json unreadable: {error}"
    return run


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
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "checkpoints")
            if RUN_JSON in files:
                found.append(read_run(Path(root)))
    return sorted(found, key=lambda run: str(run.run_dir))
