"""Runs combined into groups: mean ± std over seeds and n, for every metric.

Runs are grouped by their overrides minus the seed (``group_overrides``), or by explicit
keys, each read from a run's overrides or, where a run was started without that
override, from its composed config (so ``--by dataset`` groups runs of an experiment
file that set the dataset too). A group's label names only the keys whose values differ
between groups; the keys all groups share go in the caption.

Only completed runs count; the others (failed, interrupted, running, broken) are kept as
``problems``, so a report lists them instead of failing on them.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dq.errors import DQUserError
from dq.report import degenerate
from dq.report.collect import RunResult, group_overrides, override_key
from dq.report.numbers import Stats, formatter, stats
from dq.rundir.layout import is_interval_key

if TYPE_CHECKING:
    import pandas as pd

MISSING = "–"  # a value a group does not have (a key it never set, a std over one run)
DEGENERATE = "degenerate"  # the column naming a group's constant predictors and diverged runs


@dataclass
class Group:
    """Runs that differ only in their seed (or agree on the ``by`` keys).

    Attributes:
        label: the differing keys' values, ``key=value, ...`` (``all runs`` for a single group).
        values: every grouping key's value, shared ones included (``""`` when a run has none).
        stats: per metric, its mean, std and n over the group's runs that report it.
        run_dirs: the group's runs.
        degenerate: per rule of dq.report.degenerate, how many of its runs break it.
    """

    label: str
    values: dict[str, str]
    stats: dict[str, Stats]
    run_dirs: list[Path]
    degenerate: dict[str, int] = field(default_factory=dict)

    def degenerate_cell(self) -> str:
        """``constant predictor 2/3, diverged 1/3``; ``""`` when every run is sound."""
        return ", ".join(f"{flag} {count}/{self.n}" for flag, count in self.degenerate.items())

    @property
    def n(self) -> int:
        return len(self.run_dirs)


@dataclass
class Summary:
    """What ``summarize`` found: the groups, the metrics, and the runs left out.

    Attributes:
        groups: sorted by their key values (numbers as numbers).
        metrics: the metric names summarised, in order.
        keys: the grouping keys whose values differ between groups (the table's first columns).
        common: the grouping keys every group shares, with their value (for a caption).
        problems: runs not included (not completed, or unreadable), each with its ``problem``.
        counts: the metrics every run wrote as an integer (parameter counts, epochs): printed as such.
    """

    groups: list[Group]
    metrics: list[str]
    keys: list[str]
    common: dict[str, str]
    problems: list[RunResult] = field(default_factory=list)
    counts: set[str] = field(default_factory=set)

    @property
    def n_runs(self) -> int:
        return sum(group.n for group in self.groups)

    def caption(self) -> str:
        """One sentence: what the numbers are and the settings all groups share."""
        text = f"Mean ± std (sample, ddof=1) over the seeds of each group; {self.n_runs} runs in {len(self.groups)} groups."
        if self.common:
            text += " Common to all: " + ", ".join(f"{key}={value}" for key, value in self.common.items()) + "."
        if self.mark_columns():
            text += " Degenerate: runs that are constant predictors or diverged (counted in the means, read them with care)."
        return text

    def key_columns(self) -> list[str]:
        return self.keys or ["group"]

    def mark_columns(self) -> list[str]:
        """``["degenerate"]`` when a group holds a constant predictor or a diverged run
        (dq.report.degenerate), shown after ``n``; none when every run is sound."""
        return [DEGENERATE] if any(group.degenerate for group in self.groups) else []

    def rows(self) -> list[dict[str, str]]:
        """Display strings, one dict per group: key columns, ``n``, one ``mean ± std`` per metric."""
        formats = {
            metric: formatter([g.stats[metric] for g in self.groups if metric in g.stats], metric in self.counts)
            for metric in self.metrics
        }
        table = []
        for group in self.groups:
            row = {key: group.values[key] or MISSING for key in self.keys} if self.keys else {"group": group.label}
            row["n"] = str(group.n)
            if self.mark_columns():
                row[DEGENERATE] = group.degenerate_cell()
            for metric in self.metrics:
                row[metric] = display(group.stats.get(metric), group.n, formats[metric])
            table.append(row)
        return table

    def frame(self) -> pd.DataFrame:
        """``rows()`` as a pandas DataFrame (columns: group keys..., n, one per metric)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=[*self.key_columns(), "n", *self.mark_columns(), *self.metrics])


def display(value: Stats | None, n_group: int, fmt: Callable[[float], str]) -> str:
    """``0.812 ± 0.004``; ``–`` for a std over one run; ``(n=k)`` when fewer runs of the
    group reported the metric; ``–`` alone when none did."""
    if value is None:
        return MISSING
    std = MISSING if math.isnan(value.std) else fmt(value.std)
    text = f"{fmt(value.mean)} ± {std}"
    return text if value.n == n_group else f"{text} (n={value.n})"


def numeric_metrics(runs: Iterable[RunResult]) -> list[str]:
    """Every key with a number (not a bool) in the runs' metrics.json, in first-seen order."""
    names: dict[str, None] = {}
    for run in runs:
        names.update(dict.fromkeys(k for k, v in run.metrics.items() if is_number(v)))
    return list(names)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def select_metrics(available: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    """The metrics named or matched (``test/*``, ``explain/*/infidelity``), in pattern order.
    Bounds of bootstrap intervals (``<key>/ci_low``, ``<key>/ci_high``) would double the
    columns: they are left out of the default and matched only by a pattern that names
    them (``test/dp_diff/ci_*``, ``*/ci_low``), so ``test/group_accuracy/*`` is the groups.

    Raises:
        DQUserError: a pattern matches no metric; the message names the nearest ones.
    """
    if not patterns:
        return [name for name in available if not is_interval_key(name)]
    chosen: dict[str, None] = {}
    for pattern in patterns:
        matched = [name for name in available if _matches(name, pattern)]
        if not matched:
            near = difflib.get_close_matches(pattern, available, n=3, cutoff=0.3)
            hint = f"; nearest: {', '.join(near)}" if near else ""
            if not available:
                hint = "; no completed run has any metric"
            raise DQUserError(f"--metrics {pattern!r} matches no metric of these runs{hint}")
        chosen.update(dict.fromkeys(matched))
    return list(chosen)


def _matches(name: str, pattern: str) -> bool:
    """``name`` fits the glob ``pattern``; an interval bound only where the pattern's last
    part names one (``ci_``): a ``*`` alone stands for the metrics, not their bounds."""
    if is_interval_key(name) and "ci_" not in pattern.rpartition("/")[2]:
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _canonical(value: Any) -> str:
    """One spelling per value, so ``1``, ``1.0`` and ``1e0`` (an override's string or a
    config's number) fall in one group, and ``[256, 128]`` and ``[256,128]`` too; a config
    group's node is named by its ``name``."""
    if isinstance(value, dict):
        return str(value.get("name", value))
    if isinstance(value, list | tuple):  # as Hydra's override grammar writes it: [256,128]
        return "[" + ",".join(_canonical(item) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    if text.lower() in ("true", "false"):  # Hydra's sweeper writes False, YAML false
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


_ABSENT = object()


def _config_value(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _flat_keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(prefix + str(key))
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
    return keys


def _by_values(runs: Sequence[RunResult], by: Sequence[str]) -> list[dict[str, str]]:
    """Each run's value of each ``by`` key: its override, else its composed config's value.

    Raises:
        DQUserError: a key that no run has, naming the nearest keys the runs do have.
    """
    configs: dict[Path, dict[str, Any]] = {}
    values: list[dict[str, str]] = []
    found: set[str] = set()
    for run in runs:
        overrides = run.override_values()
        row = {}
        for key in by:
            if key in overrides:
                row[key] = _canonical(overrides[key])
            else:
                config = configs[run.run_dir] = run.config()
                value = _config_value(config, key)
                row[key] = "" if value is _ABSENT else _canonical(value)
                if value is _ABSENT:
                    continue
            found.add(key)
        values.append(row)
    for key in by:
        if runs and key not in found:  # (no completed run: nothing to check against)
            known = {override_key(item) for run in runs for item in run.overrides}
            for config in configs.values():
                known.update(_flat_keys(config))
            near = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = f"; nearest: {', '.join(near)}" if near else ""
            raise DQUserError(f"--by {key!r} is neither an override nor a config key of any run{hint}")
    return values


def _sort_key(values: Sequence[str]) -> tuple[tuple[int, float, str], ...]:
    """Numbers in numeric order before strings in text order."""
    out = []
    for value in values:
        try:
            out.append((0, float(value), value))
        except ValueError:
            out.append((1, 0.0, value))
    return tuple(out)


def summarize(
    runs: Sequence[RunResult], metrics: Sequence[str] | None = None, by: Sequence[str] | None = None
) -> Summary:
    """Group the completed runs and compute mean, std (ddof=1; NaN for one run) and n per
    metric; keep the other runs as problems.

    Args:
        runs: from ``dq.report.collect.find_runs``.
        metrics: names or glob patterns (``test/*``); None: every numeric metric.
        by: grouping keys (override keys or dotted config keys); None: the overrides minus the seed.

    Raises:
        DQUserError: a metric pattern that matches nothing, or a ``by`` key no run has.
    """
    done = [run for run in runs if run.ok]
    problems = [run for run in runs if not run.ok]
    names = select_metrics(numeric_metrics(done), metrics)

    if by:
        keys = list(by)
        per_run = _by_values(done, keys)
    else:
        per_run = [{override_key(item): item.partition("=")[2] for item in group_overrides(run)} for run in done]
        keys = list(dict.fromkeys(key for values in per_run for key in values))
    members: dict[tuple[str, ...], list[RunResult]] = {}
    for run, values in zip(done, per_run, strict=True):
        members.setdefault(tuple(values.get(key, "") for key in keys), []).append(run)

    ordered = sorted(members, key=_sort_key)
    differing = [i for i, _ in enumerate(keys) if len({combo[i] for combo in ordered}) > 1]
    common = (
        {keys[i]: ordered[0][i] for i in range(len(keys)) if i not in differing and ordered[0][i]} if ordered else {}
    )
    groups = []
    for combo in ordered:
        label = ", ".join(f"{keys[i]}={combo[i] or MISSING}" for i in differing) or "all runs"
        group_runs = members[combo]
        group_stats = {}
        for name in names:
            found = [float(run.metrics[name]) for run in group_runs if is_number(run.metrics.get(name))]
            if found:
                group_stats[name] = stats(found)
        flagged = Counter(flag for run in group_runs for flag in degenerate.flags(run.metrics))
        groups.append(
            Group(
                label, dict(zip(keys, combo, strict=True)), group_stats, [r.run_dir for r in group_runs], dict(flagged)
            )
        )
    counts = {name for name in names if all(isinstance(run.metrics.get(name, 0), int) for run in done)}
    return Summary(groups, names, [keys[i] for i in differing], common, problems, counts)
