"""``dq-table NAME [--quick] [--out DIR] [--runs DIR] [--fresh] [--jobs N] [OVERRIDE ...]``.

Loads ``conf/paper/NAME.yaml``, checks it and every row's config before anything runs,
runs the prepare stages, then the rows (``dq-train -m`` per row, up to ``--jobs`` rows at
once, the extra overrides passed to every run: ``trainer.device=cpu``, ``launcher=slurm``),
then compares and writes ``<out>/NAME.md``, ``.csv`` and ``.tex`` (``NAME-quick.*`` with
``--quick``).

``--jobs``: without a launcher on the command line, one row per CPU core at once, each
row's seeds one after another in its dq-train (which keeps its imports between them);
rows, not seeds, fill the cores, so none idles while a row's last seed trains. With a
launcher named, one row at a time as before (the launcher spreads its seeds), unless
``--jobs`` says otherwise; ``--jobs N`` > 1 with a launcher that runs a row's seeds side
by side on this machine (joblib, submitit_local) is refused: both would share the cores.
A stop signal (Ctrl-C, SIGTERM) stops every dq-train it started (dq.paper.slots).

Runs land in ``outputs/tables/NAME[-quick]/`` and are reused by the next invocation (an
interrupted table continues where it stopped; ``--fresh`` starts over). A row that fails
does not stop the table: its cells say ``failed``, the table is written, and the command
exits 1. A mistake in the table file or the command line exits 2 with one line, as does a
table whose ``requires`` keys (its local files: a dataset root, weights) the command line
does not set.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

from dq.engine import preemption
from dq.errors import DQUserError, RunInterrupted, first_line
from dq.paper.compare import check_finding, row_result
from dq.paper.figure import pareto_figure
from dq.paper.launch import completed_jobs, compose_overrides, row_runs, run_prepare, run_rows
from dq.paper.load import available, load_table
from dq.paper.plan import REFERENCE, Plan, default_runs_dir, make_plan
from dq.paper.slots import Slots
from dq.paper.spec import TableSpec
from dq.paper.stamp import LoadSampler
from dq.paper.write import TableOutcome, display_rows, finding_line, headers, setting_lines, write_table
from dq.report.collect import override_key
from dq.report.plots import Figure
from dq.rundir.record import git_state

EXIT_USER_ERROR = 2
EXIT_FAILED = 1
# Launchers that run a row's seeds side by side on this machine: with rows side by side too
# (--jobs > 1) they would share the same cores.
LOCAL_PARALLEL = ("joblib", "submitit_local")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (exit 2) like dq's other errors."""

    def error(self, message: str) -> NoReturn:
        print(f"dq-table: error: {message}; usage: {USAGE}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


USAGE = (
    "dq-table NAME [--quick] [--out DIR] [--runs DIR] [--fresh] [--jobs N] [--tables DIR] [--in-process] [OVERRIDE ...]"
)


def parser() -> argparse.ArgumentParser:
    made = _Parser(
        usage=USAGE,
        prog="dq-table",
        description="Run a paper table from conf/paper/NAME.yaml and write tables/NAME.md, .csv and .tex.",
        epilog=f"tables: {', '.join(available())}",
    )
    made.add_argument("name", help="the table (a file name in conf/paper/ without .yaml)")
    made.add_argument("overrides", nargs="*", help="dq-train overrides for every run, e.g. launcher=joblib")
    made.add_argument("--quick", action="store_true", help="the CI-sized version (quick.seeds, quick.overrides)")
    made.add_argument("--out", type=Path, default=Path("tables"), help="where the table files go (default: tables/)")
    made.add_argument("--runs", type=Path, default=None, help="runs directory (default: outputs/tables/NAME[-quick])")
    made.add_argument("--fresh", action="store_true", help="delete the table's earlier runs and start over")
    made.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="rows at once, each its seeds one after another (default: one per CPU core; 1 with a launcher override)",
    )
    made.add_argument("--tables", type=Path, default=None, help="where table files are (default: dq's conf/paper/)")
    made.add_argument(
        "--in-process",
        action="store_true",
        help="run the jobs one by one in this process (tests, debugging); launcher overrides do not apply",
    )
    return made


def check_requires(spec: TableSpec, extra: list[str]) -> None:
    """The keys the table ``requires`` (files dq cannot ship) must be on the command line:
    one line naming each missing key and what it must point to, before anything runs."""
    given = {override_key(item) for item in extra}
    missing = [f"{key}=<{what}>" for key, what in spec.requires.items() if key not in given]
    if missing:
        raise DQUserError(
            f"table {spec.name} needs local files that dq cannot ship; name them on the command line: {', '.join(missing)}"
        )


def rows_at_once(jobs: int | None, extra: list[str], in_process: bool) -> int:
    """How many rows run at once: ``--jobs``, or by default one per CPU core unless the
    command line names a launcher (then one: the launcher spreads each row's seeds, as it
    always did) or asks for ``--in-process``. Refuses a combination that would overload the
    cores or cannot hold."""
    launcher = next((item.partition("=")[2] for item in extra if override_key(item) == "launcher"), None)
    if jobs is None:
        return 1 if launcher is not None or in_process else os.cpu_count() or 1
    if jobs < 1:
        raise DQUserError(f"--jobs must be a number of rows at once (1, 2, ...), got {jobs}")
    if jobs > 1 and in_process:
        raise DQUserError(f"--jobs {jobs} runs rows in dq-train processes side by side; --in-process runs every "
                          "job one by one in dq-table: give one of the two")  # fmt: skip
    if jobs > 1 and launcher in LOCAL_PARALLEL:
        raise DQUserError(
            f"--jobs {jobs} runs {jobs} rows at once, each row's seeds one after another; launcher={launcher} runs "
            f"a row's seeds at once too, on the same cores: give --jobs 1 with launcher={launcher}, or leave the "
            "launcher out"
        )
    return jobs


def check_overrides(plan: Plan) -> None:
    """Compose every run and baseline row's config once (first seed), so a typo in the table
    file or on the command line is one line now, not a failed row later."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from dq.config.validation import unknown_override_message
    from dq.spec import compose, to_spec

    try:
        OverridesParser.create().parse_overrides(plan.extra)
    except HydraException as error:
        raise DQUserError(f"bad override on the command line: {first_line(str(error))}") from error
    uses_prepare = {row.slug for row in plan.rows if any("{prepare:" in item for item in row.overrides)}
    for row in plan.rows:
        if row.kind == REFERENCE:
            continue
        try:
            cfg = compose(compose_overrides(plan, row, plan.seeds[0]))
            if row.slug not in uses_prepare:  # a prepared directory does not exist yet
                to_spec(cfg)
        except (HydraException, OmegaConfBaseException) as error:
            line = unknown_override_message(error) or first_line(str(error))  # dq-train's line for a typo
            raise DQUserError(f"row {row.label!r}: {line}") from error
        except DQUserError as error:
            raise DQUserError(f"row {row.label!r}: {error}") from error


def write_html(outcome: TableOutcome, out_dir: Path) -> None:
    """The table as ``<out>/<stem>.html``: the comparison with the source, the notes on
    sources and settings, the findings and the figures (dq.report.html)."""
    import pandas as pd

    from dq.report.html import write_table_html

    frame = pd.DataFrame(display_rows(outcome), columns=headers(outcome.spec))
    notes = [f"Source: {outcome.spec.source.cite} — {outcome.spec.source.where}", *setting_lines(outcome)]
    notes += [finding_line(result) for result in outcome.findings]
    write_table_html(outcome.title, frame, notes, outcome.figures, Path(out_dir) / f"{outcome.stem}.html")


def say(line: str) -> None:
    print(f"dq-table: {line}", flush=True)


def main(argv: list[str]) -> None:
    args = parser().parse_intermixed_args(argv)
    started, git = time.perf_counter(), git_state()  # the code that runs the table, before anything changes
    load = LoadSampler().start()  # the load beside the seconds: a table's time means little without it
    try:
        spec = load_table(args.name, args.tables)
        check_requires(spec, list(args.overrides))
        runs_dir = args.runs or default_runs_dir(spec.name, args.quick)
        plan = make_plan(spec, args.quick, runs_dir, list(args.overrides), args.in_process)
        at_once = rows_at_once(args.jobs, list(args.overrides), args.in_process)
        check_overrides(plan)
    except DQUserError as error:
        print(f"dq-table: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    if args.fresh and runs_dir.exists():
        say(f"--fresh: removing {runs_dir}")
        shutil.rmtree(runs_dir)
    say(
        f"{spec.name}{' (quick)' if args.quick else ''}: {len(plan.rows)} rows, seeds {plan.seeds}, "
        f"{at_once} row(s) at once, runs in {runs_dir}"
    )
    computed = [row for row in plan.rows if row.kind != REFERENCE]
    reused = sum(len(completed_jobs(plan.row_dir(row), plan.seeds)) for row in computed)
    slots = Slots(at_once)
    try:
        with preemption.catching_stop_signals(leaving=True):
            prepared = run_prepare(plan, say, slots)
            run_rows(plan, say, slots)
    except RunInterrupted as stopped:
        say(f"interrupted ({stopped}): every dq-train it started has stopped; the same command again reuses "
            "the finished runs and trains the rest")  # fmt: skip
        sys.exit(stopped.exit_code)
    finally:
        slots.stop()  # nothing left running, whatever ended the rows early

    shown = [*spec.metrics, *spec.columns, *(m for m in spec.pareto if m not in spec.metrics + spec.columns)]
    results = [row_result(row, row_runs(plan, row), shown, len(plan.seeds)) for row in plan.rows]
    findings = [check_finding(finding, results) for finding in spec.findings]
    stem = f"{spec.name}-quick" if args.quick else spec.name
    figures: list[Figure] = []
    if spec.pareto:
        figure = pareto_figure(results, spec.pareto[0], spec.pareto[1], spec.title, args.out / f"{stem}-pareto.png")
        figures += [figure] if figure else []
    outcome = TableOutcome(
        spec=spec,
        quick=args.quick,
        seeds=plan.seeds,
        results=results,
        findings=findings,
        command=shlex.join(["dq-table", *argv]),
        seconds=time.perf_counter() - started,
        reused=(reused, len(computed) * len(plan.seeds)),
        git=git,
        figures=figures,
        extra=list(args.overrides),
        machine=load.stop(),
    )
    paths = write_table(outcome, args.out)
    write_html(outcome, args.out)
    for result in findings:
        say(f"finding {'holds' if result.holds else 'does not hold' if result.holds is False else 'not evaluated'}: "
            f"{result.finding.text} ({result.describe()})")  # fmt: skip
    incomplete = [result.label for result in results if result.problems]
    say(f"wrote {', '.join(str(path) for path in [*paths, *(f.path for f in figures)])} in {outcome.seconds:.0f} s")
    for result in results:
        for problem in result.problems:
            say(f"not included: row {result.label!r}: {problem}")
    if incomplete or not prepared:
        say(
            f"rows with failed or missing seeds: {', '.join(incomplete) or 'none'}"
            + ("" if prepared else "; a prepare stage failed")
        )
        sys.exit(EXIT_FAILED)
