"""Writing a finished table: ``<name>.md`` (people), ``.csv`` (programs), ``.tex``
(papers, booktabs), each atomically.

The markdown says where the source's numbers come from, how our setting differs, which
rows are the source's own (a different setting, never compared), each finding with its
numbers, and the command, time and commit that made the table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dq.paper.compare import FindingResult, RowResult, Stat
from dq.paper.spec import SourceValue, TableSpec
from dq.paper.stamp import MachineStamp
from dq.report.plots import Figure
from dq.report.tables import latex_escape
from dq.rundir.write import write_text

FAILED = "failed"
MARKS = {True: "✓", False: "✗", None: "–"}


@dataclass
class TableOutcome:
    """Everything a written table shows."""

    spec: TableSpec
    quick: bool
    seeds: list[int]
    results: list[RowResult]
    findings: list[FindingResult]
    command: str
    seconds: float
    git: dict
    figures: list[Figure] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # the command line's overrides, appended to every run
    # (runs an earlier invocation had completed, runs in the table): a re-run's seconds
    # are not the cost of the table
    reused: tuple[int, int] = (0, 0)
    machine: MachineStamp | None = None  # host, start and end, load while it ran

    @property
    def stem(self) -> str:
        return f"{self.spec.name}-quick" if self.quick else self.spec.name

    @property
    def title(self) -> str:
        return f"{self.spec.title} (quick version)" if self.quick else self.spec.title


def number(value: float | None, count: bool = False) -> str:
    """A table's number: whole for a count (one decimal where a mean of counts is not
    whole), thousands grouped from 1000 up, four decimals below."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if count:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"


def show_stat(value: Stat | None) -> str:
    if value is None:
        return "n/a"
    spread = f" ± {number(value.std, value.count)}" if value.std is not None else ""
    return f"{number(value.mean, value.count)}{spread} ({value.n})"


def show_source(value: SourceValue | None) -> str:
    if value is None:
        return ""
    return number(value.mean) + (f" ± {number(value.std)}" if value.std is not None else "")


def headers(spec: TableSpec) -> list[str]:
    compared = [h for m in spec.metrics for h in (f"{m} source", f"{m} ours (n)", f"{m} diff", f"{m} within")]
    return ["row", *compared, *spec.columns, "note"]


def row_note(result: RowResult) -> str:
    parts = [result.planned.row.note] if result.planned.row.note else []
    if result.planned.kind == "baseline":
        parts.insert(0, f"baseline: {str(result.planned.row.baseline).rpartition('.')[2]}")
    if result.problems:
        parts.append(f"{len(result.problems)} seed(s) without result: {result.problems[0]}")
    if result.degenerate:  # dq.report.degenerate: its numbers are no model's skill
        parts.append("DEGENERATE " + ", ".join(result.degenerate))
    if result.majority_rate is not None:  # an accuracy is never shown without it
        parts.append(f"test majority rate {number(result.majority_rate.mean)}")
    return "; ".join(parts)


def display_rows(outcome: TableOutcome) -> list[list[str]]:
    """The table's cells as shown (markdown and HTML), one list per row."""
    spec, rows = outcome.spec, []
    for result in outcome.results:
        label = f"{result.label} (different setting)" if result.reference else result.label
        cells = [label]
        for metric in spec.metrics:
            source = result.planned.row.source.get(metric)
            if result.reference:
                cells += [show_source(source), "", "", ""]
                continue
            ours = FAILED if result.failed else show_stat(result.values.get(metric))
            diff = result.diff(metric)
            shown_diff = "" if diff is None else f"{diff:+.4f}"
            verdict = result.verdict(metric, spec.tolerance)
            cells += [show_source(source), ours, shown_diff, "" if source is None else MARKS[verdict]]
        for column in spec.columns:
            cells.append("" if result.reference else FAILED if result.failed else show_stat(result.values.get(column)))
        cells.append(row_note(result))
        rows.append(cells)
    return rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tolerance_text(spec: TableSpec) -> str:
    rules = []
    if spec.tolerance.abs is not None:
        rules.append(f"|ours − source| ≤ {spec.tolerance.abs:g}")
    if spec.tolerance.sigma is not None:
        rules.append(
            f"|ours − source| ≤ {spec.tolerance.sigma:g} × √(σ_ours² + σ_source²) where the source gives a std "
            "(σ_ours: sample std over our seeds, 0 with one seed; σ_source: the source's std over its seeds)"
        )
    return " or ".join(rules) if rules else "none set (differences shown, not judged)"


def setting_lines(outcome: TableOutcome) -> list[str]:
    """What ran and what the source ran. A quick table states the quick setting and every
    override it appended (quick.overrides, then the command line's); the full setting is
    then named as what did not run, so a quick table never passes for the full one."""
    spec = outcome.spec
    source = f"source — {spec.source.setting or 'see the source'}"
    extra = f"; from the command line: {', '.join(outcome.extra)}" if outcome.extra else ""
    if not outcome.quick:
        return [f"Setting: ours — {spec.setting or 'as the source'}; {source}."] + (
            [f"Overrides from the command line, appended to every run: {', '.join(outcome.extra)}."]
            if outcome.extra
            else []
        )
    appended = ", ".join(spec.quick.overrides) or "none"
    described = spec.quick.setting or "the full setting below, changed by these overrides"
    return [
        f"Setting run (quick version, CI-sized; not the table's numbers): {described}; seeds "
        f"{', '.join(map(str, outcome.seeds))}; quick overrides appended to every run: {appended}{extra}.",
        f"Full table's setting (not run here): ours — {spec.setting or 'as the source'}; {source}.",
    ]


def finding_line(result: FindingResult) -> str:
    mark = {True: "✓ holds", False: "✗ does not hold", None: "– not evaluated (a row has no number)"}[result.holds]
    return f"{mark}: {result.finding.text} — {result.describe()}"


def markdown(outcome: TableOutcome, figure_links: Sequence[str] = ()) -> str:
    spec = outcome.spec
    cols = headers(spec)
    lines = [f"# {outcome.title}", ""]
    lines.append(f"Source: {spec.source.cite}" + (f" — {spec.source.where}" if spec.source.where else "") + ".")
    lines.append("")
    for line in setting_lines(outcome):
        lines += [line, ""]
    lines.pop()
    lines += ["", "| " + " | ".join(map(_md_cell, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(map(_md_cell, cells)) + " |" for cells in display_rows(outcome)]
    lines += [
        "",
        f"Ours: mean ± sample std over seeds {', '.join(map(str, outcome.seeds))} (n completed). "
        f"Diff: ours − source. Tolerance: {tolerance_text(spec)}. "
        "Rows marked (different setting) are the source's own numbers, shown and never compared.",
    ]
    if outcome.findings:
        lines += ["", "## Findings", ""]
        lines += [f"- {finding_line(result)}" for result in outcome.findings]
    for link, figure in zip(figure_links, outcome.figures, strict=False):
        lines += ["", f"![{figure.caption}]({link})"]
    commit = outcome.git.get("commit") or "unknown"
    dirty = " (uncommitted changes)" if outcome.git.get("dirty") else ""
    reused, total = outcome.reused
    again = f" ({reused} of {total} runs reused from an earlier invocation)" if reused else ""
    where = f", {outcome.machine.describe()}" if outcome.machine else ""
    lines += [
        "",
        f"Made by `{outcome.command}` in {outcome.seconds:.0f} s{again}{where}; dq commit {commit}{dirty}.",
        "",
    ]
    return "\n".join(lines)


def _csv_number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def csv_text(outcome: TableOutcome) -> str:
    """One line per row: its kind, n, and per metric the source's and our numbers."""
    spec = outcome.spec
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["row", "kind", "completed", "failed"]
    for metric in spec.metrics:
        head += [f"{metric}/source_mean", f"{metric}/source_std", f"{metric}/mean", f"{metric}/std", f"{metric}/n"]
        head += [f"{metric}/diff", f"{metric}/within"]
    for column in spec.columns:
        head += [f"{column}/mean", f"{column}/std", f"{column}/n"]
    writer.writerow([*head, "note"])
    for result in outcome.results:
        cells: list[str] = [result.label, result.planned.kind, str(result.completed), str(result.failed).lower()]
        for metric in spec.metrics:
            source, ours = result.planned.row.source.get(metric), result.values.get(metric)
            verdict = result.verdict(metric, spec.tolerance)
            cells += [_csv_number(source.mean if source else None), _csv_number(source.std if source else None)]
            cells += [_csv_number(ours.mean if ours else None), _csv_number(ours.std if ours else None)]
            cells += [str(ours.n) if ours else "", _csv_number(result.diff(metric))]
            cells.append("" if verdict is None else str(verdict).lower())
        for column in spec.columns:
            ours = result.values.get(column)
            cells += [_csv_number(ours.mean if ours else None), _csv_number(ours.std if ours else None)]
            cells.append(str(ours.n) if ours else "")
        writer.writerow([*cells, row_note(result)])
    return buffer.getvalue()


def tex_escape(text: str) -> str:
    escaped = latex_escape(text)
    return (
        escaped.replace("±", r"$\pm$")
        .replace("✓", "yes")
        .replace("✗", "no")
        .replace("–", "--")
        .replace("—", "---")
        .replace("−", "-")
        .replace("≤", r"$\leq$")
        .replace("×", r"$\times$")
        .replace("ε", r"$\varepsilon$")
        .replace("λ", r"$\lambda$")
        .replace("σ", r"$\sigma$")
        .replace("√", r"$\surd$")
        .replace("²", r"$^2$")
    )


def tex(outcome: TableOutcome) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``); every string escaped."""
    spec = outcome.spec
    cols = headers(spec)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{" + tex_escape(f"{outcome.title}. Source: {spec.source.cite}, {spec.source.where}.") + "}",
        r"\label{tab:" + tex_escape(outcome.stem) + "}",
        r"\begin{tabular}{l" + "r" * (len(cols) - 2) + "p{5cm}}",
        r"\toprule",
        " & ".join(tex_escape(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_escape(c) for c in cells) + r" \\" for cells in display_rows(outcome)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\footnotesize " + tex_escape(line) for line in setting_lines(outcome)]
    lines += [r"\par\footnotesize " + tex_escape(f"Tolerance: {tolerance_text(spec)}."), r"\end{table}", ""]
    return "\n".join(lines)


def write_table(outcome: TableOutcome, out_dir: Path) -> list[Path]:
    """``<out>/<stem>.md``, ``.csv`` and ``.tex``; returns their paths."""
    out_dir = Path(out_dir)
    links = [_relative(figure.path, out_dir) for figure in outcome.figures]
    paths = [out_dir / f"{outcome.stem}.{suffix}" for suffix in ("md", "csv", "tex")]
    for path, text in zip(paths, (markdown(outcome, links), csv_text(outcome), tex(outcome)), strict=True):
        write_text(path, text)
    return paths


def _relative(path: Path, start: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(start).resolve()))
    except ValueError:
        return str(Path(path).resolve())
