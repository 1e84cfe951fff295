"""Ours against the source: mean ± std over seeds, the difference, the tolerance verdict,
and the source's qualitative findings checked on our numbers.

Pure functions of numbers and run records (no runs start here), so each rule is tested on
hand-made values.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dq.paper.plan import REFERENCE, PlannedRow
from dq.paper.spec import Finding, SourceValue, Tolerance
from dq.report import degenerate
from dq.report.collect import BROKEN, RunResult

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass
class Stat:
    """A metric over the seeds: mean, sample std (None for one value), and n. ``count``:
    every seed wrote the metric as a JSON integer (``test/examples``, ``params/total``), so
    it is printed as a whole number, not as ``200.0000 ± 0.0000``."""

    mean: float
    std: float | None
    n: int
    count: bool = False


def stat(values: Sequence[float]) -> Stat | None:
    """Mean and sample standard deviation (ddof 1) of the finite values; None when none are."""
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(float(v))]
    if not finite:
        return None
    count = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return Stat(mean, None, 1, count)
    variance = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return Stat(mean, math.sqrt(variance), len(finite), count)


def spread(ours: Stat, source: SourceValue) -> float | None:
    """sqrt(σ_ours² + σ_source²): the spread of the difference of two runs drawn like ours
    and like the source's, each std over seeds. σ_ours is our sample std (0 with one seed);
    None when the source gives no std (a σ rule cannot apply)."""
    if source.std is None:
        return None
    return math.hypot(ours.std or 0.0, source.std)


def within(ours: Stat, source: SourceValue, tolerance: Tolerance) -> bool | None:
    """Whether ours agrees with the source: within ``abs``, or within ``sigma`` × the spread
    of both sides (``spread``) where the source gives a std; None when the table sets no
    tolerance that applies. Both sides' spread counts: our seeds vary as the source's do, so
    a rule on the source's std alone refuses a setting that matches."""
    gap = abs(ours.mean - source.mean)
    verdicts = []
    if tolerance.abs is not None:
        verdicts.append(gap <= tolerance.abs)
    both = spread(ours, source)
    if tolerance.sigma is not None and both is not None:
        verdicts.append(gap <= tolerance.sigma * both)
    return any(verdicts) if verdicts else None


@dataclass
class RowResult:
    """One row of the finished table.

    Attributes:
        planned: the planned row (label, kind, source values).
        values: ours per metric (compared metrics and extra columns); empty for reference rows.
        completed: seeds that completed.
        problems: one line per seed that did not (its error).
        degenerate: one line per completed seed that is a constant predictor or diverged
            (dq.report.degenerate), e.g. ``seed 0: constant predictor``.
        majority_rate: the test majority rate over the seeds (what always answering the
            most common class scores), shown beside the row's accuracy.
    """

    planned: PlannedRow
    values: dict[str, Stat] = field(default_factory=dict)
    completed: int = 0
    problems: list[str] = field(default_factory=list)
    degenerate: list[str] = field(default_factory=list)
    majority_rate: Stat | None = None

    @property
    def label(self) -> str:
        return self.planned.label

    @property
    def reference(self) -> bool:
        return self.planned.kind == REFERENCE

    @property
    def failed(self) -> bool:
        """A row that should have numbers and has none."""
        return not self.reference and self.completed == 0

    def diff(self, metric: str) -> float | None:
        source = self.planned.row.source.get(metric)
        ours = self.values.get(metric)
        return None if source is None or ours is None else ours.mean - source.mean

    def verdict(self, metric: str, tolerance: Tolerance) -> bool | None:
        source = self.planned.row.source.get(metric)
        ours = self.values.get(metric)
        return None if source is None or ours is None or self.reference else within(ours, source, tolerance)

    def mean(self, metric: str) -> float | None:
        """Ours, or for a reference row the source's number (findings may name either)."""
        if self.reference:
            source = self.planned.row.source.get(metric)
            return None if source is None else source.mean
        value = self.values.get(metric)
        return None if value is None else value.mean


def row_result(planned: PlannedRow, runs: Sequence[RunResult], metrics: Sequence[str], expected: int) -> RowResult:
    """Ours for one row from its runs (failed runs counted, not averaged)."""
    result = RowResult(planned)
    if planned.kind == REFERENCE:
        return result
    good = [run for run in runs if run.ok]
    result.completed = len(good)
    # A broken run is named by its directory (its line names the file inside it).
    result.problems = [
        f"{run.run_dir if run.status == BROKEN else f'seed {run.seed}'}: {run.problem}" for run in runs if not run.ok
    ]
    missing = expected - len(runs)
    if missing > 0:
        result.problems.append(f"{missing} seed(s) never ran")
    for metric in metrics:
        value = stat([run.metrics.get(metric, float("nan")) for run in good])
        if value is not None:
            result.values[metric] = value
    result.degenerate = [
        f"seed {run.seed}: {degenerate.mark(run.metrics)}" for run in good if degenerate.flags(run.metrics)
    ]
    result.majority_rate = stat([run.metrics.get(degenerate.MAJORITY_RATE, float("nan")) for run in good])
    return result


@dataclass
class FindingResult:
    finding: Finding
    holds: bool | None  # None: a side has no number (its row failed)
    left: float | None
    right: float | None

    def describe(self) -> str:
        """``0.931 (penalty) > 0.516 (no penalty) + 0.1``: the numbers behind the verdict."""
        f = self.finding

        def show(value: float | None, side: object) -> str:
            number = "n/a" if value is None else f"{value:.4g}"
            return f"{number} ({side})" if isinstance(side, str) else number

        shift = f.margin if f.op.startswith(">") else -f.margin  # what is added to right
        margin = f" {'+' if shift > 0 else '-'} {abs(shift):g}" if shift else ""
        return f"{f.metric}: {show(self.left, f.left)} {f.op} {show(self.right, f.right)}{margin}"


def check_finding(finding: Finding, results: Sequence[RowResult]) -> FindingResult:
    """``left op right`` on ``metric``; ``>``/``>=`` need left above right by ``margin``,
    ``<``/``<=`` below it by ``margin``."""
    by_label = {result.label: result for result in results}
    left = by_label[finding.left].mean(finding.metric)
    right = by_label[finding.right].mean(finding.metric) if isinstance(finding.right, str) else float(finding.right)
    if left is None or right is None:
        return FindingResult(finding, None, left, right)
    shifted = right + finding.margin if finding.op.startswith(">") else right - finding.margin
    return FindingResult(finding, OPS[finding.op](left, shifted), left, right)
