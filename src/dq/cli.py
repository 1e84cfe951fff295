"""Console entry points. ``dq-train`` is a Hydra app: every Hydra flag works
(``--cfg job``, ``--multirun``, ``hydra/launcher=...``).

Mistakes a user can fix are reported in one line on stderr with exit code 2:
Hydra's composition errors (unknown choice, unknown key, wrong type) are turned into
such a line here; set HYDRA_FULL_ERROR=1 to see the full traceback instead.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from dq.config import config_dir
from dq.config.command_line import check_command_line, check_package
from dq.config.overrides import FORMS, check_overrides
from dq.config.validation import interpolation_hint, omegaconf_message, unknown_override_message
from dq.engine import preemption
from dq.errors import EXIT_BY_USER, EXIT_TRY_AGAIN, DQUserError, RunFailed, RunInterrupted, first_line, printable
from dq.rundir.claim import ClaimRefused
from dq.rundir.write import quiet_log_files_without_room

if TYPE_CHECKING:
    from dq.sweep.outcome import JobOutcome

EXIT_USER_ERROR = 2
# How Hydra's ValueError starts when the command line asks for two modes at once.
HYDRA_MODE_CLASH = "Only one of --run, --multirun, --cfg"
EXIT_FAILED = 1
_show_traceback = False  # set from HYDRA_FULL_ERROR by train_main


def _choices(group: str) -> list[str]:
    """The choices of a config group (Hydra lists none for a list choice: ``logger=[x]``)."""
    return sorted(path.stem for path in (Path(config_dir()) / group).glob("*.yaml"))


def one_line(text: str) -> str:
    """A short multi-line message joined into one line; a long one (a config dump) cut to its
    first line."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]  # not str.splitlines: see first_line
    joined = " ".join(lines)
    return joined if len(lines) <= 5 and len(joined) <= 400 else first_line(text)


def _unparsed(error: OverrideParseException) -> str:
    """What Hydra could not parse: the override, and its parser's first complaint."""
    problem = first_line(str(error))
    quoted = re.fullmatch(r"Error parsing override '(.*)'", problem)
    if quoted or problem.endswith(str(error.override)):  # the message is only the override
        lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip() and "^" not in line]
        problem = lines[0] if lines and not lines[0].startswith("See ") else ""
    return f"{error.override!r}" + (f" ({problem})" if problem else "")


def explain_error(error: BaseException) -> str:
    """One line saying what was wrong and, where known, what is allowed."""
    if isinstance(error, DQUserError):
        return str(error)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, _, choice = error.missing_cfg_file.rpartition("/")
        allowed = ", ".join(error.options or _choices(group))
        return f"unknown {group} {choice!r}; allowed: {allowed}"
    if isinstance(error, OverrideParseException):
        return f"cannot parse override {_unparsed(error)}; {FORMS}; quote a value with spaces or non-ASCII characters (key='a b')"
    unknown = unknown_override_message(error)
    if unknown is not None:
        return unknown
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        return f"bad value for {cause.full_key}: {omegaconf_message(cause)}{interpolation_hint(cause)}"
    if isinstance(error, OmegaConfBaseException) and getattr(error, "full_key", None):
        return f"bad value for {error.full_key}: {omegaconf_message(error)}{interpolation_hint(error)}"
    return one_line(str(error))


def refusal(error: BaseException) -> str | None:
    """The one line ``dq-train`` prints for input the user can fix, else None (a bug, whose
    traceback is kept). Hydra's own errors about the command line count as the user's."""
    if isinstance(error, DQUserError | HydraException | OmegaConfBaseException):
        return printable(explain_error(error))
    if isinstance(error, ValueError) and str(error).startswith(HYDRA_MODE_CLASH):
        return f"{error} (one at a time)"
    return None


# Pre-empted runs exit 75 (EX_TEMPFAIL) so a requeue hook can tell "resume me" from a failure.
# RunFailed: TrainingDiverged (a non-finite batch) and DiskFull (no room to write a file).
EXIT_CODES = {DQUserError: EXIT_USER_ERROR, RunInterrupted: EXIT_TRY_AGAIN, RunFailed: EXIT_FAILED}


def exit_code(error: BaseException) -> int:
    if isinstance(error, RunInterrupted):  # 130 after Ctrl-C, 75 after a scheduler's signal
        return error.exit_code
    return next(code for kind, code in EXIT_CODES.items() if isinstance(error, kind))


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _train_app(cfg: DictConfig) -> JobOutcome | None:
    quiet_log_files_without_room()  # a full disk: one line, not a traceback per log record
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        # A sweep job records any failure and returns it: the other jobs go on.
        from dq.sweep.job import run_job

        return run_job(cfg)
    from dq.runner import resume_command_line, train

    try:
        search = HydraConfig.get().runtime.choices.get("hparams_search")
        if search is not None:  # a single run would ignore the search space silently
            raise DQUserError(
                f"hparams_search={search} runs a search: add -m (dq-train -m ... hparams_search={search})"
            )
        _refuse_launcher_without_sweep()
        if cfg.get("resume"):
            resume_command_line(cfg)
        else:
            train(cfg)
    except (DQUserError, RunInterrupted, RunFailed) as error:
        # Leave here, before Hydra adds its own "Error executing job" report.
        if _show_traceback:
            raise
        kind = "interrupted" if isinstance(error, RunInterrupted) else "error"
        print(f"dq-train: {kind}: {printable(str(error))}", file=sys.stderr)
        sys.exit(exit_code(error))
    except OmegaConfBaseException as error:  # an interpolation that fails once resolved (experiment_name=${nope})
        if _show_traceback:
            raise
        print(f"dq-train: error: {refusal(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    return None


def _refuse_launcher_without_sweep() -> None:
    """A single run runs in this process whatever ``launcher=`` says: refuse a launcher
    other than ``local`` instead of ignoring it silently (and leave no run directory)."""
    launcher = HydraConfig.get().runtime.choices.get("launcher")
    if launcher not in (None, "local"):
        from dq.rundir.claim import discard_unstarted

        discard_unstarted(Path(HydraConfig.get().runtime.output_dir))
        raise DQUserError(f"launcher={launcher} runs a sweep's jobs: add -m (dq-train -m ... launcher={launcher})")


@contextmanager
def _errors_reach_us() -> Iterator[None]:
    """Set HYDRA_FULL_ERROR=1 while Hydra runs, so errors reach us instead of Hydra's
    multi-line report, and put the user's own value back afterwards."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


# Hydra flags that print or refuse and train nothing: rank 0 does that, the other ranks leave.
_NO_TRAINING_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"}


def _worker_rank() -> int:
    """This process's rank when it is a rank other than 0 of a run on several processes
    (torchrun's RANK/WORLD_SIZE, as dq.engine.launch reads them), else 0; read here without
    importing torch."""
    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:
        return 0


def _serve_rank(rank: int) -> None:
    """A rank other than 0: train with rank 0 and leave with its exit code; it prints no line
    for what rank 0 reports too (an interruption, a diverged batch), one line for anything else."""
    if _NO_TRAINING_FLAGS & set(sys.argv[1:]):
        return
    from dq.runner import serve_rank

    try:
        serve_rank()
    except (RunInterrupted, RunFailed) as error:
        sys.exit(exit_code(error))
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dq-train: process {rank}: {type(error).__name__}: {printable(first_line(str(error)))}", file=sys.stderr)
        sys.exit(exit_code(error) if isinstance(error, DQUserError) else EXIT_FAILED)


def _launcher_failed(error: Exception) -> None:
    """A sweep under way whose launcher or sweeper raised: sweep.json says ``failed``
    (dq.sweep.callback), and ``dq-train`` leaves with that one line and exit 1
    (HYDRA_FULL_ERROR=1 keeps the traceback). Anything else is left to raise."""
    from dq.sweep.callback import fail_started_sweep

    line = fail_started_sweep(error)
    if line is None or _show_traceback:
        return
    print(f"dq-train: error: {printable(line)}", file=sys.stderr)
    sys.exit(EXIT_FAILED)


def _check_resume(overrides: list[str]) -> None:
    """``resume=<run>`` (not a sweep): overrides against the saved run's values before Hydra
    composes, which would call a key of that run that the default config lacks unknown."""
    if any(item.startswith("resume=") for item in overrides) and not {"-m", "--multirun"} & set(sys.argv[1:]):
        from dq.rundir.resume import check_resume_overrides

        check_resume_overrides(overrides)


def train_main() -> None:
    """``dq-train``: compose the config from conf/ and the command line, train, evaluate.

    A sweep (``-m``) exits 1 after all its jobs when any failed, 75 when one was
    interrupted (see dq.sweep.callback). Under torchrun (or started by rank 0 for
    ``trainer.devices=N``), a rank other than 0 takes its job from rank 0 instead."""
    rank = _worker_rank()
    if rank:
        _serve_rank(rank)
        return
    from dq.spec import register_schemas
    from dq.sweep.callback import abandon_sweep, end_lost_sweep, sweep_exit_code
    from dq.sweep.slurm_request import RequestRefused

    register_schemas()
    global _show_traceback
    _show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        args = check_command_line(sys.argv[1:])
        check_package(args, str(config_dir()))
        _check_resume(list(args.overrides))
        # From here to the exit, a stop signal (Ctrl-C, a scheduler's) is a stop request:
        # a run stops after its batch, a sweep starts no further job (dq.engine.preemption).
        with _errors_reach_us(), preemption.catching_stop_signals(leaving=True):
            _train_app()
    except ClaimRefused as refused:  # a run or sweep directory it may not write (dq.rundir.claim)
        if _show_traceback:
            raise refused.error from None
        print(f"dq-train: error: {printable(str(refused.error))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except RequestRefused as refused:  # a SLURM request no node can meet (sweep.json: failed)
        if _show_traceback:
            raise
        print(f"dq-train: error: {printable(str(refused))}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # a second Ctrl-C outside a run (a sweep's start-up): nothing to record
        if _show_traceback:
            raise
        print("dq-train: interrupted: stopped by SIGINT", file=sys.stderr)
        sys.exit(EXIT_BY_USER)
    except RunFailed as error:  # a sweep that found no room even for its job records (DiskFull)
        if _show_traceback:
            raise
        print(f"dq-train: error: {printable(str(error))}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except Exception as error:
        lost = end_lost_sweep(error)  # a SLURM job killed outright: one line per job, not a hang
        if lost is not None:
            sys.exit(lost)
        line = refusal(error)
        if line is None:
            _launcher_failed(error)  # one line for a sweep whose launcher gave up (no sbatch)
            raise
        abandon_sweep()  # a sweep refused before its first job leaves no sweep.json
        if _show_traceback:
            raise
        print(f"dq-train: error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)

    if sweep_exit_code():  # a sweep ran every job, and some failed or were interrupted
        sys.exit(sweep_exit_code())


def train_command() -> None:
    """The ``dq-train`` console script: ``train_main``, then out of the process without the
    interpreter's teardown (about a second with torch loaded: dq.process_exit)."""
    from dq.process_exit import run_then_leave

    run_then_leave(train_main)


EXPLAIN_USAGE = (
    "usage: dq-explain RUN_DIR [explain.KEY=VALUE ...]\n"
    "Explain a finished run again, e.g. dq-explain outputs/default/<time> "
    "explain.methods=[deeplift] explain.metrics=[infidelity]"
)


def explain_main(argv: list[str] | None = None) -> None:
    """``dq-explain RUN_DIR [explain.KEY=VALUE ...]``: re-run the explanation step of a
    finished run with its saved ``explain`` config and these overrides; write
    RUN_DIR/explanations/ and merge the ``explain/...`` keys into metrics.json."""
    from rich.console import Console

    from dq.console import metrics_table
    from dq.reexplain import explain_directory

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["-h"], ["--help"]):
        print(EXPLAIN_USAGE)
        return
    try:
        if not args or args[0].startswith("explain."):
            raise DQUserError("missing RUN_DIR; " + EXPLAIN_USAGE.splitlines()[0])
        metrics = explain_directory(args[0], args[1:])
    except (DQUserError, RunFailed) as error:  # RunFailed: DiskFull, the run's earlier files intact
        print(f"dq-explain: error: {error}", file=sys.stderr)
        sys.exit(exit_code(error))
    console = Console()
    console.print(metrics_table(metrics, title="explanation metrics"))
    console.print(str(Path(args[0]) / "explanations"), markup=False, highlight=False, soft_wrap=True)


def report_main(argv: list[str] | None = None) -> None:
    """``dq-report PATH...``: tables and plots of every run under the paths (dq.report.command)."""
    from dq.report.command import main

    main(sys.argv[1:] if argv is None else list(argv))


def table_main(argv: list[str] | None = None) -> None:
    """``dq-table NAME [--quick]``: run a paper table from conf/paper/ (dq.paper.command)."""
    from dq.paper.command import main

    main(sys.argv[1:] if argv is None else list(argv))


def baselines_main(argv: list[str] | None = None) -> None:
    """``dq-baselines RUN_DIR``: fairness baselines on a run's split beside its numbers (dq.baselines.command)."""
    from dq.baselines.command import main

    main(sys.argv[1:] if argv is None else list(argv))


COMPRESS_USAGE = (
    "usage: dq-compress RUN_DIR compress=prune|quantize [compress.KEY=VALUE ...]\n"
    "Compress a finished run into RUN_DIR/compressed/<name>/, e.g. dq-compress outputs/fair_adult/<time> "
    "compress=prune compress.amount=0.8 (compress.kind=structured, compress.finetune_epochs=N; "
    "compress=quantize compress.scheme=int8_dynamic|int8_weight_only|int8_static)"
)


def compress_main(argv: list[str] | None = None) -> None:
    """``dq-compress RUN_DIR compress=...``: compress a finished run (dq.compress.command); one
    line and exit 2 for input the user can fix (Hydra's composition errors included)."""
    from rich.console import Console

    from dq.compress.command import compress_directory
    from dq.console import metrics_table

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["-h"], ["--help"]):
        print(COMPRESS_USAGE)
        return
    try:
        if not args or "=" in args[0]:
            raise DQUserError("missing RUN_DIR; " + COMPRESS_USAGE.splitlines()[0])
        check_overrides(args[1:])
        target, metrics = compress_directory(
            args[0], args[1:], say=lambda line: print(f"dq-compress: {line}", file=sys.stderr)
        )
    except (DQUserError, RunFailed) as error:
        print(f"dq-compress: error: {printable(str(error))}", file=sys.stderr)
        sys.exit(exit_code(error))
    except Exception as error:
        line = refusal(error)
        if line is None:
            raise
        print(f"dq-compress: error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    console = Console()
    console.print(metrics_table(metrics, title="compressed beside the original"))
    console.print(str(target), markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    train_command()
