"""``dq-report PATH... [--metrics M,...] [--by K,...] [--out DIR] [--title T]``.

Finds every run under the paths, writes summary.csv/.md/.tex and plots/ (dq.report.build),
prints the table's first columns and the files written, and lists the runs it left out
on stderr. Exits 0 even when some runs failed (they are listed), 2 with one line for bad
input: no such path, no runs, a metric pattern that matches nothing, an unknown ``--by`` key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from dq.errors import DiskFull, DQUserError, printable
from dq.report.build import Report, write_report
from dq.report.collect import find_runs
from dq.report.tables import problem_lines

EXIT_USER_ERROR = 2
EXIT_FAILED = 1  # a report that could not be written (no room): not the user's input
SHOWN_METRICS = 4  # the terminal table's metric columns; the files hold them all
DEFAULT_OUT = Path("report")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line like every other dq error."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    parse = _Parser(
        prog="dq-report",
        description="Tables (mean ± std over seeds) and plots of every run under the paths.",
    )
    parse.add_argument(
        "paths", nargs="+", metavar="PATH", help="run directories, sweep directories, or folders holding them"
    )
    parse.add_argument(
        "--metrics",
        type=_list,
        default=None,
        metavar="M,...",
        help="metric names or glob patterns (test/*); default: all",
    )
    parse.add_argument(
        "--by",
        type=_list,
        default=None,
        metavar="K,...",
        help="group by these override/config keys; default: overrides minus seed",
    )
    parse.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory; default: the PATH when one is given, else ./report",
    )
    parse.add_argument("--title", default=None, help="the tables' and plots' title; default: what was swept")
    return parse


def _print(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def cell(text: str) -> Text:  # plain text: no markup, no control character reaches the terminal
        return Text(printable(text))

    summary = report.summary
    frame = summary.rows()
    shown = summary.metrics[:SHOWN_METRICS]
    table = Table(title=cell(report.title), title_justify="left")
    fixed = [*summary.key_columns(), "n"]
    for column in fixed:
        table.add_column(cell(column), overflow="fold")
    for metric in shown:
        table.add_column(cell(metric), justify="right")
    for row in frame:
        table.add_row(*(cell(row[c]) for c in [*fixed, *shown]))
    console = Console()
    console.print(table)
    if len(summary.metrics) > len(shown):
        console.print(f"({len(summary.metrics) - len(shown)} more metrics in the files)", markup=False, highlight=False)
    for group in summary.groups:  # below the table, which has no room for another column
        if group.degenerate:
            line = f"degenerate: {group.label}: {group.degenerate_cell()}"
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    for path in [*report.files, *(figure.path for figure in report.figures)]:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    try:
        runs = find_runs(args.paths)
        if not runs:
            raise DQUserError(f"no runs under {', '.join(args.paths)} (a run directory holds run.json)")
        out = args.out or (Path(args.paths[0]) if len(args.paths) == 1 else DEFAULT_OUT)
        if out.exists() and not out.is_dir():
            raise DQUserError(f"--out {out} is a file, not a directory")
        report = write_report(runs, out, args.title, metrics=args.metrics, by=args.by)
    except DQUserError as error:
        print(f"dq-report: error: {printable(str(error))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except DiskFull as error:  # files written before it stay whole; the runs are untouched
        print(f"dq-report: error: {printable(str(error))}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    _print(report)
    for path, status, reason in problem_lines(report.summary.problems):
        print(printable(f"dq-report: not included: {path} ({status}): {reason}"), file=sys.stderr)
