"""What a paper table file (``conf/paper/<table>.yaml``) holds, as a typed schema.

A table is a list of rows. A row is one of three kinds:

- a **run row**: dq-train runs (the table's ``overrides`` + the row's ``overrides``, one
  run per seed); ours is the mean ± std of each compared metric over the seeds. An
  override written with Hydra's sweep syntax (``regularizer.fairness.weight=0.1,0.3,1``)
  makes one row per value, labelled ``"<label> (<key>=<value>)"``.
- a **baseline row** (``baseline`` set): a function of dq's own data, computed in the
  same table on the same split (for example fairlearn's ExponentiatedGradient); it gets
  the row's composed config and a seed and returns flat metrics, like a run.
- a **reference row** (``reference: true``): the source's numbers only, from a setting
  that differs from ours (``note`` says how); shown, never compared.

A row's ``source`` holds the source's number for each compared metric. Ours is within
tolerance when ``|ours - source| <= tolerance.abs`` or, where the source gives a std and
``tolerance.sigma`` is set, ``|ours.mean - source.mean| <= sigma * sqrt(ours.std² +
source.std²)`` (ours.std: the sample std over our seeds, 0 with one seed).

``findings`` are the source's qualitative claims, checked on our numbers (for settings
that differ from the source's): ``left`` (a row label) ``op`` ``right`` (a row label or a
number), on ``metric`` (ours, means over seeds), with ``margin``.

``prepare`` names runs that must finish before the rows (a pretrained base, say): a row
override may use ``{prepare:<name>}``, replaced by that run's directory (same seed).

``quick`` shrinks the whole table to CI size (``dq-table <name> --quick``); its
``setting`` says in words what that version runs (its header states it and lists the
quick overrides, so a quick table never claims the full setting).

``requires`` maps the config keys the command line must set to what each must name: the
files a table needs that dq cannot ship (a dataset's local root, pretrained weights), e.g.
``{dataset.root: "the folder holding waterbirds_v1.0/"}``. ``dq-table NAME`` without them
stops before any run with one line naming each missing key and what it must point to;
given (``dq-table NAME dataset.root=/data``), they are appended to every run like any
command-line override, and the table's page lists them with those overrides.

``pareto`` (``[x metric, y metric]``, optional) draws every row's means (baselines and
reference rows included) in that plane with the Pareto front marked (lower x, higher y
is better: a fairness gap against accuracy).

Units: a source value is written in the metric's own units (accuracy 0.8535, not 85.35),
so ours and the source's are compared as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class SourceValue:
    """The source's number for one metric (a std where it reports one)."""

    mean: float
    std: Optional[float] = None


@dataclass
class Tolerance:
    """Ours agrees with the source when within ``abs``, or within ``sigma`` × sqrt(σ_ours² +
    σ_source²) where the source gives a std (dq.paper.compare.within)."""

    abs: Optional[float] = None
    sigma: Optional[float] = None


@dataclass
class Source:
    """Where the source's numbers come from."""

    cite: str = ""  # authors, year, title
    where: str = ""  # table, figure, or the reference code's recorded output
    setting: str = ""  # the source's setting (data, model, training)


@dataclass
class Row:
    label: str = "???"
    overrides: list[str] = field(default_factory=list)
    source: dict[str, SourceValue] = field(default_factory=dict)  # metric → source's value
    baseline: Optional[str] = None  # "dq.paper.baselines.<function>" for a baseline row
    baseline_args: dict[str, Any] = field(default_factory=dict)
    reference: bool = False
    note: str = ""  # what differs from our setting (reference rows), or anything a reader needs


@dataclass
class Finding:
    text: str = "???"
    metric: str = "???"
    left: str = "???"
    op: str = ">"  # one of > >= < <=
    right: Any = None  # a row label, or a number
    margin: float = 0.0  # > and >=: left must exceed right by margin; < and <=: fall below it by margin


@dataclass
class Quick:
    """The CI-sized version: fewer seeds, overrides appended to every run, and ``setting``:
    what that version runs, in words (a quick table's header states it, not the full one)."""

    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)
    setting: str = ""


@dataclass
class Prepare:
    overrides: list[str] = field(default_factory=list)


@dataclass
class TableSpec:
    name: str = "???"
    title: str = "???"
    source: Source = field(default_factory=Source)
    setting: str = ""  # the setting we ran, where it differs from the source's
    metrics: list[str] = field(default_factory=list)  # compared metrics, in column order
    columns: list[str] = field(default_factory=list)  # further metrics shown, not compared
    tolerance: Tolerance = field(default_factory=Tolerance)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    overrides: list[str] = field(default_factory=list)  # common to every run row
    prepare: dict[str, Prepare] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    quick: Quick = field(default_factory=Quick)
    requires: dict[str, str] = field(default_factory=dict)  # config key → what the command line must set it to
    pareto: list[str] = field(default_factory=list)  # [x metric, y metric]; empty: no figure
