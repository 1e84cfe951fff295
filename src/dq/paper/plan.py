"""From a table spec to the work it takes: rows expanded, seeds chosen, directories named.

A row override in Hydra's sweep syntax (``regularizer.fairness.weight=0.1,0.3,1``) makes
one row per value (Hydra's own OverridesParser reads it, so quoting and lists behave as on
the dq-train command line). The quick version keeps the rows and swaps the seeds for
``quick.seeds`` and appends ``quick.overrides`` to every run.

Directories (``<runs>`` is ``outputs/tables/<name>[-quick]`` by default)::

    <runs>/prepare-<stage>/<job>/   a prepare stage's runs, one job per seed (and seed-<s> links)
    <runs>/<row slug>/<job>/        a row's runs (or baseline results), one job per seed
    <runs>/logs/<slug>.log          what dq-train printed for that row

Job ``i`` is seed ``seeds[i]`` everywhere. A prepare stage's directory also gets a link
``seed-<s>`` to the job of seed ``s``, so a row's ``{prepare:<stage>}`` becomes
``<runs>/prepare-<stage>/seed-${seed}``: the prepare run of the same seed, a plain config
interpolation that resolves the same in the job and when the run is loaded again later.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from dq.errors import DQUserError, first_line
from dq.paper.load import PREPARE_REF
from dq.paper.spec import Row, TableSpec

RUN, BASELINE, REFERENCE = "run", "baseline", "reference"


@dataclass
class PlannedRow:
    """One row of the finished table.

    Attributes:
        label: as shown (a sweep row's label names its value).
        kind: ``run``, ``baseline`` or ``reference``.
        overrides: the row's own overrides after expansion (table and quick ones are added
            when it runs).
        row: the spec row it came from (source values, baseline, note).
        slug: its directory name under the table's runs directory.
    """

    label: str
    kind: str
    overrides: list[str]
    row: Row
    slug: str = ""


@dataclass
class Plan:
    """What one invocation of a table does."""

    spec: TableSpec
    quick: bool
    seeds: list[int]
    runs_dir: Path
    rows: list[PlannedRow] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # the command line's overrides, for every run
    in_process: bool = False  # run jobs here one by one (dq.train) instead of dq-train -m

    @property
    def common(self) -> list[str]:
        """Overrides every run and baseline of the table gets, before the row's own."""
        return list(self.spec.overrides)

    @property
    def appended(self) -> list[str]:
        """Overrides after the row's own: quick's, then the command line's (they win)."""
        return [*(self.spec.quick.overrides if self.quick else []), *self.extra]

    def row_dir(self, row: PlannedRow) -> Path:
        return self.runs_dir / row.slug

    def prepare_dir(self, stage: str) -> Path:
        return self.runs_dir / f"prepare-{slugify(stage)}"

    def log_path(self, slug: str) -> Path:
        return self.runs_dir / "logs" / f"{slug}.log"

    def run_overrides(self, row: PlannedRow) -> list[str]:
        """Everything a row's runs get but the seed and the sweep directory."""
        own = [self.substitute(item) for item in row.overrides]
        return [*self.common, *own, *self.appended]

    def substitute(self, override: str) -> str:
        """``{prepare:<stage>}`` → that stage's run directory of the same seed (job)."""
        return PREPARE_REF.sub(lambda match: f"{self.prepare_dir(match.group(1)).resolve()}/seed-${{seed}}", override)


def slugify(label: str) -> str:
    """A label as a directory name: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-.") or "row"


def _expand(row: Row) -> list[tuple[str, list[str]]]:
    """``(label, overrides)`` for each combination of the row's sweep overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    # {prepare:x} is not Hydra syntax (a dict to Hydra): parse a placeholder in its place.
    marked = [PREPARE_REF.sub("PREPARE_PLACEHOLDER", item) for item in row.overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(marked)
    except HydraException as error:
        raise DQUserError(f"row {row.label!r}: bad override in {row.overrides}: {first_line(str(error))}") from error
    choices: list[list[tuple[str | None, str]]] = []
    for original, override in zip(row.overrides, parsed, strict=True):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append(
                [(f"{override.key_or_group}={value}", f"{key}={value}") for value in override.sweep_string_iterator()]
            )
        else:
            choices.append([(None, original)])
    expanded = []
    for combination in itertools.product(*choices):
        named = [name for name, _ in combination if name is not None]
        label = f"{row.label} ({', '.join(named)})" if named else row.label
        expanded.append((label, [item for _, item in combination]))
    return expanded


def expand_rows(spec: TableSpec) -> list[PlannedRow]:
    """Every row of the table in order, sweep rows expanded, each with a unique slug."""
    planned: list[PlannedRow] = []
    for row in spec.rows:
        kind = REFERENCE if row.reference else BASELINE if row.baseline else RUN
        items = [(row.label, list(row.overrides))] if kind == REFERENCE else _expand(row)
        planned.extend(PlannedRow(label, kind, overrides, row) for label, overrides in items)
    used: set[str] = set()
    for item in planned:
        slug = base = slugify(item.label)
        for number in itertools.count(2):
            if slug not in used:
                break
            slug = f"{base}-{number}"
        item.slug = slug
        used.add(slug)
    return planned


def make_plan(spec: TableSpec, quick: bool, runs_dir: Path, extra: list[str], in_process: bool = False) -> Plan:
    seeds = list(spec.quick.seeds if quick else spec.seeds)
    return Plan(spec, quick, seeds, Path(runs_dir), expand_rows(spec), list(extra), in_process)


def default_runs_dir(name: str, quick: bool) -> Path:
    return Path("outputs") / "tables" / (f"{name}-quick" if quick else name)
