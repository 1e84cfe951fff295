"""A ``Summary`` as text: summary.csv (for machines), summary.md and summary.tex (for people).

The CSV keeps full precision and every grouping key (shared ones too), one row per group,
``<metric>/mean``, ``<metric>/std`` and ``<metric>/n`` columns (an empty cell where there
is no value). The markdown and LaTeX tables show ``mean ± std`` as ``Summary.rows`` prints
it; every string that came from a config or a metric name is escaped for its format.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from dq.errors import first_line, printable
from dq.report.collect import RunResult
from dq.report.summary import MISSING, Summary


def _number(value: float) -> str:
    return "" if math.isnan(value) else repr(value)


def summary_csv(summary: Summary) -> str:
    """One row per group: ``label``, every grouping key, ``n``, then mean/std/n per metric."""
    keys = [*summary.keys, *summary.common]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    marks = summary.mark_columns()
    parts = ("mean", "std", "n")
    writer.writerow(["label", *keys, "n", *marks, *(f"{m}/{part}" for m in summary.metrics for part in parts)])
    for group in summary.groups:
        cells: list[str] = [group.label, *(group.values[key] for key in keys), str(group.n)]
        cells += [group.degenerate_cell()] if marks else []
        for metric in summary.metrics:
            value = group.stats.get(metric)
            cells += [_number(value.mean), _number(value.std), str(value.n)] if value else ["", "", "0"]
        writer.writerow(cells)
    return buffer.getvalue()


def _md(text: str) -> str:
    """A markdown table cell: control characters as escapes, pipes and backslashes escaped,
    HTML's ``<`` neutralised."""
    text = printable(text.replace("\n", " ")).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("<", "&lt;")  # a tag would be HTML to a markdown renderer


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(_md(cell) for cell in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def _shown_path(path: Path, base: Path | None) -> str:
    """``path`` relative to ``base`` when it lies under it (a sweep's job: ``3``), else as found."""
    if base is not None:
        with suppress(ValueError):
            return str(path.resolve().relative_to(base.resolve()))
    return str(path)


def problem_lines(problems: Sequence[RunResult], base: Path | None = None) -> list[tuple[str, str, str]]:
    """(path, status, one-line reason) of each run left out; paths relative to ``base`` where under it."""
    return [(_shown_path(run.run_dir, base), run.status, first_line(run.problem or "")) for run in problems]


def summary_markdown(summary: Summary, title: str, base: Path | None = None) -> str:
    """A ``# title``, the caption, the table, and a "Runs not included" section when any
    was left out (run paths relative to ``base``, the report's directory, where under it)."""
    columns = [*summary.key_columns(), "n", *summary.mark_columns(), *summary.metrics]
    rows = [[row[column] for column in columns] for row in summary.rows()]
    lines = [f"# {_md(title)}", "", _md(summary.caption()), ""]
    if rows:
        lines += _md_table(columns, rows, right_from=len(summary.key_columns()))
    else:
        lines.append("No completed runs.")
    if summary.problems:
        lines += ["", "## Runs not included", ""]
        lines += _md_table(["run", "status", "error"], problem_lines(summary.problems, base), right_from=3)
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "|": r"\textbar{}",  # in LaTeX's default font encoding these print as other glyphs
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "–": "--",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(char) for char in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """``text`` with control characters as escapes and LaTeX's special characters made
    literal (one pass, so ``\\`` is not re-escaped)."""
    return _LATEX_PATTERN.sub(lambda match: _LATEX_SPECIAL[match.group()], printable(text))


_EXPONENT = re.compile(r"e([+-]\d+)$")


def _latex_number(text: str) -> str:
    """``2.88e-04`` → ``2.88\\times10^{-4}`` (math mode); other numbers as they are."""
    return _EXPONENT.sub(lambda match: f"\\times10^{{{int(match.group(1))}}}", text)


def _latex_value(cell: str) -> str:
    """``0.812 ± 0.004`` → ``$0.812 \\pm 0.004$``; a missing std → ``$0.812 \\pm \\mbox{--}$``."""
    if cell == MISSING:
        return "--"
    value, _, rest = cell.partition(" (n=")
    suffix = f" (n={rest}" if rest else ""
    mean, _, std = (_latex_number(part) if part != MISSING else part for part in value.partition(" ± "))
    if not std:
        return f"${latex_escape(mean)}${suffix}"
    if std == MISSING:
        return f"${mean} \\pm \\mbox{{--}}${suffix}"
    return f"${mean} \\pm {std}${suffix}"


def summary_latex(summary: Summary, title: str) -> str:
    """A ``table`` with a booktabs ``tabular``; needs ``\\usepackage{booktabs}``."""
    key_columns = summary.key_columns()
    marks = summary.mark_columns()
    columns = [*key_columns, "n", *marks, *summary.metrics]
    spec = "l" * len(key_columns) + "r" + "l" * len(marks) + "r" * len(summary.metrics)
    lines = [
        "% Needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(title)}. {latex_escape(summary.caption())}}}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(column) for column in columns) + " \\\\",
        "\\midrule",
    ]
    for row in summary.rows():
        cells = [latex_escape(row[column]) for column in [*key_columns, "n", *marks]]
        cells += [_latex_value(row[metric]) for metric in summary.metrics]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
