"""What the figures read from runs: the radii a run was attacked at, its sensitive groups,
and runs grouped by their overrides minus the seed, labelled by what varies between groups.

Everything here is ordered deterministically (numbers by value, names as metrics.json
lists them), so the same runs always give the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from dq import metric_keys as keys
from dq.report.collect import RunResult, group_overrides, override_key
from dq.report.plots.style import MAX_LABEL, short_key


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def radii(runs: Iterable[RunResult]) -> list[tuple[float, str]]:
    """``(ε, tag)`` of every ``test/robust_accuracy@<tag>`` in the runs' metrics, by ε."""
    found: dict[str, float] = {}
    for run in runs:
        for key in run.metrics:
            if (tag := keys.robust_eps(key)) is not None and (eps := _number(tag)) is not None:
                found[tag] = eps
    return sorted(((eps, tag) for tag, eps in found.items()), key=lambda item: item[0])


def group_names(runs: Iterable[RunResult]) -> list[str]:
    """The sensitive groups (or classes) with a ``test/group_accuracy/<g>``, in the order the
    first run that has each lists them."""
    names: dict[str, None] = {}
    for run in runs:
        for key in run.metrics:
            if (group := keys.group_of(key)) is not None:
                names.setdefault(group, None)
    return list(names)


def groups_are_classes(run: RunResult) -> bool:
    """Whether the run's groups are its classes (``dataset.group=label``): then per-group
    accuracy is class-wise accuracy, and DP/EO gaps between classes are no fairness measure."""
    return str((run.config().get("dataset") or {}).get("group")) == "label"


def fair_groups(runs: Iterable[RunResult]) -> list[RunResult]:
    """The runs whose groups are sensitive groups (not classes)."""
    return [run for run in runs if not groups_are_classes(run)]


def numbers(runs: Iterable[RunResult], key: str) -> np.ndarray:
    """The finite values of metric ``key`` over ``runs`` (runs without it are left out)."""
    values = [run.metrics.get(key) for run in runs]
    return np.array([float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)], dtype=float)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN for none)."""
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _natural(override: str) -> tuple:
    """Sort ``key=value`` by key, then numbers by value before other values by text."""
    key, _, value = override.partition("=")
    number = _number(value)
    return (key, 0, number, "") if number is not None else (key, 1, 0.0, value)


@dataclass(frozen=True)
class RunGroup:
    """Runs that share their overrides except the seed; ``label`` names what sets it apart."""

    key: tuple[str, ...]
    label: str
    runs: tuple[RunResult, ...]

    def values(self, key: str) -> np.ndarray:
        return numbers(self.runs, key)


def varying_keys(groups: Sequence[tuple[str, ...]]) -> list[str]:
    """Override keys whose value is not the same in every group (absent counts as a value)."""
    settings = [{override_key(o): o.partition("=")[2] for o in key} for key in groups]
    names = sorted({name for setting in settings for name in setting})
    return [name for name in names if len({setting.get(name) for setting in settings}) > 1]


def label_of(key: tuple[str, ...], varying: Sequence[str]) -> str:
    """A label like ``fairness.weight=0.3, adversarial.weight=1``: the group's values of the varying keys."""
    setting = {override_key(o): o.partition("=")[2] for o in key}
    present = [name for name in varying if name in setting]
    label = ", ".join(f"{short_key(name)}={setting[name]}" for name in present)
    if len(label) > MAX_LABEL:  # keys by their last part only, so the values stay visible
        label = ", ".join(f"{name.rsplit('.', 1)[-1]}={setting[name]}" for name in present)
    return label or "all runs"


def run_groups(runs: Iterable[RunResult]) -> tuple[list[RunGroup], list[str]]:
    """The completed runs grouped by overrides minus the seed, in natural order of their
    overrides, and the override keys that vary between the groups."""
    by_key: dict[tuple[str, ...], list[RunResult]] = {}
    for run in runs:
        if run.ok:
            by_key.setdefault(group_overrides(run), []).append(run)
    ordered = sorted(by_key, key=lambda key: [_natural(o) for o in key])
    varying = varying_keys(ordered)
    groups = [RunGroup(key, label_of(key, varying), tuple(by_key[key])) for key in ordered]
    return groups, varying
