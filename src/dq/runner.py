"""One run, start to finish: validate → data → model → fit → test metrics → files.

``train(cfg)`` is what ``dq-train`` runs inside Hydra and what a notebook or a test calls
with a config from Hydra's compose API. Everything a run produces lands in its run
directory (docs/design.md's output contract); run.json says ``completed`` only at the very end.

``train(cfg, run_dir, resume=True)`` continues the run in ``run_dir`` from its last.pt
(``dq.rundir.resume`` decides whether and from where, ``dq.engine.checkpoint.restore`` loads it);
``resume_command_line(cfg)`` is ``dq-train resume=<run dir>``.
SIGTERM/SIGUSR1 during training stop the run after its current batch (``RunInterrupted``,
run.json ``interrupted``); during evaluation and explanations they are noted and the run
finishes first (a few seconds to minutes), so its result is not thrown away.

A run on several processes (``trainer.devices=N`` or torchrun; dq.engine.launch): this
process is rank 0, the only one that writes; it trains with the others, then evaluates,
explains and reports alone. ``serve_rank()`` is what every other rank runs.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from dq import data, models
from dq import metric_keys as keys
from dq.config.report import PerRun, ReportConfig
from dq.console import RichProgress, config_summary, metrics_table
from dq.data_records import Splits
from dq.device import resolve_device, seed_everything, set_threads
from dq.engine import launch, preemption
from dq.engine.callbacks import FitCallback, FitResult, LogEpochs, ShowProgress
from dq.engine.checkpoint import ResumePoint
from dq.engine.fast_path import apply_fast_path, check_fast_path
from dq.engine.loop import FitSettings, check_monitor, fit
from dq.engine.optim import build_optimizer, build_scheduler
from dq.engine.ranks import Ranks
from dq.errors import DiskFull, DQUserError, RunInterrupted, first_line
from dq.evaluation import evaluate
from dq.loggers import LoggerContext, RunLoggers, build_loggers, flatten_config
from dq.metrics.robustness import check_robust_eval
from dq.models.size import check_fits
from dq.objectives.base import ModelTransform, Objective
from dq.objectives.registry import build_objective, build_transforms
from dq.report.degenerate import caveat_lines, diverged
from dq.rundir import checksums
from dq.rundir.claim import discard_unstarted
from dq.rundir.layout import (
    CHECKPOINTS,
    HYDRA_DIR,
    LAST_CHECKPOINT,
    METRICS_JSON,
    METRICS_JSONL,
    RUN_JSON,
    default_run_dir,
)
from dq.rundir.load import bind_teachers
from dq.rundir.lock import hold as hold_run
from dq.rundir.read import read_config, read_metrics
from dq.rundir.record import RunRecord
from dq.rundir.resume import read_last, resume_point, saved_config, settle
from dq.rundir.resume_config import resumed_config
from dq.rundir.write import remove_stale_tmp, write_text
from dq.spec import RunSpec, to_spec


def resolve_run_dir(experiment_name: str, run_dir: str | Path | None) -> Path:
    """An explicit directory, else Hydra's output directory, else ``outputs/<experiment>/<time>``."""
    if run_dir is not None:
        return Path(run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return default_run_dir(experiment_name)


@dataclass
class _BuiltRun:
    """What ``train`` has built before anything is trained."""

    spec: RunSpec
    splits: Splits
    model: nn.Module
    transforms: list[ModelTransform]
    objective: Objective
    notes: list[str]
    device: torch.device
    run_dir: Path
    loggers: RunLoggers
    world: int  # processes that train it (dq.engine.launch)
    cfg: DictConfig


def hydra_task_overrides() -> list[str] | None:
    """The command-line overrides Hydra gave this run (a sweep job's own), else None."""
    if not HydraConfig.initialized():
        return None
    return [str(item) for item in HydraConfig.get().overrides.task]


def in_sweep() -> bool:
    """True inside a job of ``dq-train -m``: a refused job keeps its directory there, so
    the sweep can list it with its error."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def save_config(cfg: DictConfig, run_dir: Path, *, overwrite: bool = False) -> None:
    """Write .hydra/config.yaml for runs started outside ``dq-train`` (Hydra writes its own),
    or, with ``overwrite``, for a resumed run whose trainer.epochs grew."""
    path = run_dir / HYDRA_DIR / "config.yaml"
    if overwrite or not path.exists():
        job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        write_text(path, OmegaConf.to_yaml(job_cfg))


def resume_command_line(cfg: DictConfig, console: Console | None = None) -> dict[str, float]:
    """``dq-train resume=<run dir> [overrides]``: continue that run with its saved config.

    The overrides on the command line must agree with the saved config (``trainer.epochs``
    may grow); the fresh directory Hydra made for this invocation is removed.
    """
    hydra_cfg = HydraConfig.get()
    run_dir = Path(str(cfg.resume))
    fresh = Path(hydra_cfg.runtime.output_dir)
    if os.path.realpath(fresh) != os.path.realpath(run_dir):  # realpath: a symlink loop is no RuntimeError
        discard_unstarted(fresh)
    saved, choices = saved_config(run_dir)
    merged = resumed_config(
        saved, cfg, list(hydra_cfg.overrides.task), saved_choices=choices, group_keys=list(hydra_cfg.runtime.choices)
    )
    return train(merged, run_dir, console, resume=True)


def prepare_run(cfg: DictConfig, run_dir: Path, *, resume: bool = False, worker: bool = False) -> _BuiltRun:
    """Everything a run needs before it trains, each part checked against the others: the
    schema (``to_spec``), the device, the data, the model, the objective's terms, the
    explanations and the loggers. ``dq-train`` refuses bad input here, before any training,
    and the fuzz tests (tests/test_fuzz_config.py) call it to check exactly that.
    A ``worker`` (a rank other than 0) builds the same run but opens no logger and never
    touches ``run_dir``.

    Raises:
        DQUserError: one line, for input the user can fix; a new run's directory is then
            removed, since it holds no result (a resumed run's is kept, and a sweep job's,
            for dq.sweep.job to mark failed).
    """
    try:
        spec = to_spec(cfg)
        set_threads(spec.trainer.num_threads)
        device = launch.rank_device(resolve_device(str(spec.trainer.device)))
        world = launch.check_world(spec.trainer, device, sweep=in_sweep())
        splits = data.build(spec.dataset, spec.seed)
        check_robust_eval(spec.eval.robust, splits.meta)
        check_fast_path(spec.trainer, spec.model.name, splits.meta)
        seed_everything(spec.seed)
        check_fits(spec.model, splits.meta, device)  # before allocating: model.hidden=[99999999999]
        model = models.build(spec.model, splits.meta)
        transforms = build_transforms(spec.regularizer, splits.meta)
        notes = [note for transform in transforms for note in transform.apply(model, restoring=resume)]
        notes += apply_fast_path(model, spec.trainer)  # after the transforms: LoRA's adapters too
        objective = build_objective(spec.regularizer, splits.meta)
        check_monitor(spec.trainer, splits, objective.val_metrics())  # terms add val/... metrics
        notes += bind_teachers(objective, spec, splits.meta, device)  # regularizer.distill.teacher
        if spec.compress is not None:  # compress=...: refused now, not after training
            from dq.compress.step import check_compressible  # fairlearn, torch-pruning: only when compressing

            check_compressible(spec.compress, str(spec.model.name), splits.meta, model)
        if spec.explain.enabled:  # captum and matplotlib load only when explanations are on
            from dq.explain.run import check_explain

            check_explain(spec.explain, splits.meta, model)
        context = LoggerContext(run_dir, spec.experiment_name)
        loggers = RunLoggers([], run_dir) if worker else build_loggers(spec.logger, context)  # opens stores now
    except DQUserError:
        if not resume and not in_sweep() and not worker:  # a sweep job keeps its directory to be listed as failed
            discard_unstarted(run_dir)
        raise
    return _BuiltRun(spec, splits, model, transforms, objective, notes, device, run_dir, loggers, world, cfg)


def train(
    cfg: DictConfig,
    run_dir: str | Path | None = None,
    console: Console | None = None,
    *,
    resume: bool = False,
) -> dict[str, float]:
    """Train and evaluate the run that ``cfg`` describes; return its final metrics.

    With ``resume``, continue the run in ``run_dir`` (default: ``cfg.resume``) from its
    checkpoints/last.pt; ``cfg`` must be its saved config, with ``trainer.epochs`` equal or
    larger. A run that is already completed trains nothing and returns its metrics.json.

    Raises:
        DQUserError: before anything is trained, for input the user can fix; a new run's
            directory is then removed, since it holds no result (a resumed run's is kept, and
            a sweep job's, for dq.sweep.job to mark failed).
        RunInterrupted: SIGTERM/SIGUSR1 stopped training; last.pt and run.json say where.
        TrainingDiverged: a batch's loss, a term or a gradient was NaN or infinite.
        DiskFull: a file found no room (ENOSPC, EDQUOT, EFBIG); run.json says ``failed``
            when it still fits, and every file written before is intact.
        DirectoryBusy: (a DQUserError) another live process holds the run directory's lock
            (``dq.rundir.lock``): it is running there now.
    """
    with ExitStack() as locks:  # the run directory's lock, held to the end (dq.rundir.lock)
        return _train(cfg, run_dir, console or Console(), resume, locks)


def _train(cfg: DictConfig, run_dir: str | Path | None, console: Console, resume: bool, locks: ExitStack) -> dict:
    point: ResumePoint | None = None
    if resume:
        if run_dir is None and not cfg.get("resume"):
            raise DQUserError("resume needs the run directory: resume=<run dir>")
        run_dir = Path(run_dir if run_dir is not None else str(cfg.resume))
        if (run_dir / RUN_JSON).is_file():  # before anything is read or cut back: a live run refuses a second process
            locks.enter_context(hold_run(run_dir, "cannot resume"))
        found = resume_point(cfg, run_dir, console)
        if found is None:
            return read_metrics(run_dir) if (run_dir / METRICS_JSON).exists() else {}
        point = found if isinstance(found, ResumePoint) else None  # None: FROM_START
    run_dir = resolve_run_dir(str(cfg.experiment_name), run_dir)
    built = prepare_run(cfg, run_dir, resume=point is not None)  # from the start: LoRA's init_from as new
    if point is not None:  # last.pt must fit this model before the run directory changes
        settle(point, built.model, run_dir)
    spec, device, loggers = built.spec, built.device, built.loggers

    overrides = hydra_task_overrides()
    run_dir.mkdir(parents=True, exist_ok=True)
    locks.enter_context(hold_run(run_dir, "cannot run"))  # a resume of this run now refuses
    remove_stale_tmp(run_dir)  # what an atomic write of a killed process left
    checksums.begin(run_dir, resume=resume)
    record = RunRecord.reopen(run_dir) if resume else RunRecord(run_dir, spec.seed, overrides=overrides)
    save_config(cfg, run_dir, overwrite=resume)  # a resumed run's follows trainer.epochs when it grew
    if point is None:  # a failed job trained again in its directory (or a resume from the start): a new epoch log
        (run_dir / METRICS_JSONL).unlink(missing_ok=True)
    record.start(device)
    try:
        loggers.start(flatten_config(cfg))
        with preemption.catching_stop_signals(), preemption.second_sigint_stops_at_once():
            metrics = _train_and_evaluate(built, console, point)
        checksums.record(run_dir, checksums.RECORDED_AT_END)
        record.finish()
    except RunInterrupted as error:
        with suppress(DiskFull):  # no room for run.json either: it stays as it was
            record.interrupt(str(error), error.at)
        loggers.close(error)
        raise
    except (KeyboardInterrupt, SystemExit) as error:  # a second Ctrl-C, submitit's handler: resumable
        stopped = stopped_at_once(error, run_dir)
        with suppress(DiskFull):
            record.interrupt(str(stopped), stopped.at)
        loggers.close(stopped)
        if isinstance(error, SystemExit):  # the handler's own exit (submitit requeues the job) goes on
            raise
        raise stopped from None
    except BaseException as error:
        failure = with_resume_hint(error, run_dir) if isinstance(error, DiskFull) else error
        with suppress(DiskFull):
            record.fail(failure)
        loggers.close(failure)
        if failure is error:
            raise
        raise failure from error.__cause__
    loggers.close()
    if not report_deferred(spec.report):
        write_report(spec, run_dir, console)
    if preemption.stop_requested():
        note = f"{preemption.received_signal()} arrived after training; the run finished its evaluation first"
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    console.print(metrics_table(metrics))
    console.print(str(run_dir), markup=False, highlight=False, soft_wrap=True)
    return metrics


def stopped_at_once(error: KeyboardInterrupt | SystemExit, run_dir: Path) -> RunInterrupted:
    """The one line for a run stopped outside a batch's end: a KeyboardInterrupt (a second
    Ctrl-C, or a first one before dq's handlers were in) or a SystemExit raised by another
    library's signal handler. Either leaves what last.pt (or, without one, the run's
    start) can go on from, so the run is ``interrupted``, never ``failed``."""
    if isinstance(error, KeyboardInterrupt):
        what, by_user = ("a second SIGINT" if preemption.stop_requested() else "SIGINT"), True
    else:
        what, by_user = f"SystemExit({error.code}) from a signal handler", False
    at = {"signal": preemption.received_signal() or ("SIGINT" if by_user else None)}
    return RunInterrupted(
        f"stopped at once by {what}; continue with: dq-train resume={run_dir}", by_user=by_user, at=at
    )


def with_resume_hint(error: DiskFull, run_dir: Path) -> DiskFull:
    """``error``'s line and what to do once there is room again: a run with a last.pt
    continues from it (every file written before the full disk is intact)."""
    if (run_dir / CHECKPOINTS / LAST_CHECKPOINT).is_file():
        return DiskFull(f"{error}; free space, then continue with: dq-train resume={run_dir}")
    return DiskFull(f"{error}; free space and run it again")


def report_deferred(report: ReportConfig) -> bool:
    """True for a sweep job under ``report.per_run=auto``: its report.html and model_card.md
    are left to ``dq-report <job dir>`` (the sweep's summary at its root says so), since
    drawing them costs a short job more than its training."""
    return PerRun(report.per_run) is PerRun.auto and in_sweep()


def write_report(spec: RunSpec, run_dir: Path, console: Console | None = None) -> None:
    """report.html and model_card.md for a completed run (``report.*`` switches them off),
    also after ``dq-explain`` changed its explanations. The run's result is already safe
    on disk, so a report that fails costs one warning line (on stderr by default), never the run."""
    console = console or Console(stderr=True)
    if not (spec.report.html or spec.report.model_card):
        return
    try:
        from dq.report.run_report import write_run_report

        write_run_report(run_dir, html=spec.report.html, model_card=spec.report.model_card)
    except Exception as error:  # whatever breaks in a report, the run stays completed
        line = f"warning: the run's report was not written: {type(error).__name__}: {first_line(str(error))}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _train_and_evaluate(run: _BuiltRun, console: Console, point: ResumePoint | None) -> dict[str, float]:
    """Fit (from ``point`` when resuming), then test metrics and explanations, each written
    to metrics.json as soon as it is known."""
    spec, splits, model, device, run_dir = run.spec, run.splits, run.model, run.device, run.run_dir
    total, trainable = models.count_parameters(model)
    console.print(config_summary(spec, splits.meta, str(device), (total, trainable), run_dir))
    for note in run.notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    progress = RichProgress(console) if spec.trainer.progress else None
    callbacks: list[FitCallback] = [LogEpochs(run.loggers), *([ShowProgress(progress)] if progress is not None else [])]
    job = launch.Job(_job_config(run.cfg), str(run_dir), resume=point is not None)
    with (
        launch.processes(run.world, device, job) as ranks,
        progress if progress is not None else nullcontext(),
    ):
        result = _fit(run, point, ranks, callbacks)

    if result.stop_request is not None:
        console.print(result.stop_request.reason, markup=False, highlight=False, soft_wrap=True)
    model.load_state_dict(result.best_state)
    for transform in run.transforms:  # checkpoints keep LoRA's adapters; evaluate what finish gives
        model = transform.finish(model)
    evaluating = time.perf_counter()
    metrics = evaluate(model, splits, eval_cfg=spec.eval, trainer=spec.trainer, device=device, seed=spec.seed)
    metrics.update(
        {
            keys.time("eval_s"): time.perf_counter() - evaluating,  # what a sweep's per-job overhead leaves out
            keys.params("total"): total,
            keys.params("trainable"): trainable,
            keys.params("trainable_fraction"): trainable / total if total else 0.0,
            keys.test("examples"): len(splits.test),
            keys.time("train_s"): result.train_time_s,
            keys.train("selected_epoch"): result.selected_epoch,
            keys.train("epochs_run"): len(result.history),
            keys.train("diverged"): float(diverged(result.history, splits.meta.num_classes)),  # dq.report.degenerate
            **(result.stop_request.metrics if result.stop_request is not None else {}),
        }
    )
    if result.best_epoch is not None:  # None: no epoch's monitored value was measured (all NaN)
        metrics[keys.train("best_epoch")] = result.best_epoch
    checksums.write_recorded_json(run_dir, METRICS_JSON, metrics)  # test metrics are safe before explaining
    for line in caveat_lines(metrics):  # a constant predictor or a diverged run still completes: say so
        console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)
    run.loggers.log_final(metrics)
    if spec.explain.enabled:
        from dq.explain.run import EXPLANATIONS, explain_run

        explained = explain_run(model, splits, splits.meta, spec.explain, run_dir, device, spec.seed)
        metrics.update(explained)
        checksums.write_recorded_json(run_dir, METRICS_JSON, metrics)
        run.loggers.log_final(explained)
        run.loggers.log_artifacts(sorted((run_dir / EXPLANATIONS).glob("*.png")), folder=EXPLANATIONS)
    if spec.compress is not None:
        metrics.update(_compress(run, model, metrics, console))
        checksums.write_recorded_json(run_dir, METRICS_JSON, metrics)
        run.loggers.log_final({key: value for key, value in metrics.items() if keys.parse(key).family == keys.COMPRESS})
    return metrics


def _compress(run: _BuiltRun, model: nn.Module, metrics: dict[str, float], console: Console) -> dict[str, float]:
    """``compress=...``: the trained model compressed into ``<run>/compressed/<name>/``
    (dq.compress.step); its ``compress/...`` keys join the run's metrics."""
    from dq.compress.step import Source, compress_run

    source = Source(
        run_dir=run.run_dir,
        cfg=read_config(run.run_dir),
        spec=run.spec,
        model=model,
        splits=run.splits,
        metrics=dict(metrics),
    )
    say = lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    target, measured = compress_run(source, run.device, say)
    say(f"compressed run: {target}")
    return measured


def _fit(
    run: _BuiltRun,
    point: ResumePoint | None,
    ranks: Ranks,
    callbacks: list[FitCallback],
) -> FitResult:
    """``fit`` the built run with a fresh optimizer and scheduler (every rank alike)."""
    spec = run.spec
    optimizer = build_optimizer(spec.optimizer, run.model.parameters())
    scheduler = build_scheduler(spec.scheduler, optimizer, spec.trainer.epochs)
    settings = FitSettings(spec.trainer, run.device, spec.seed, run_dir=run.run_dir, resume_from=point, ranks=ranks)
    return fit(
        run.model,
        run.objective,
        run.splits,
        optimizer=optimizer,
        scheduler=scheduler,
        settings=settings,
        callbacks=callbacks,
    )


def _job_config(cfg: DictConfig) -> str:
    """The run's config as the other ranks rebuild it: resolved (their Hydra never runs)."""
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]), resolve=True)


def serve_rank() -> None:
    """A rank other than 0 of a run on several processes: take the job rank 0 published,
    build the same run (data, model, objective; a resume reads last.pt), train its shard
    in step with the others, and leave. It writes nothing: rank 0 writes the run directory.

    Raises:
        RunInterrupted, TrainingDiverged: as rank 0 does, at the same batch.
    """
    import torch.distributed as dist

    job, store = launch.worker_job()
    run_dir = Path(job.run_dir)
    run = prepare_run(OmegaConf.create(job.config), run_dir, resume=job.resume, worker=True)
    point = None
    if job.resume:  # rank 0 keeps the history and best weights; the loop state is all a rank needs
        point = ResumePoint(checkpoint=read_last(run_dir), history=[], best_state=None, selected_epoch=None)
    ranks = launch.worker_join(store, run.device)
    try:
        with preemption.catching_stop_signals():
            _fit(run, point, ranks, [])
    finally:
        dist.destroy_process_group()
