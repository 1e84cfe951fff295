"""One run, start to finish: validate → data → model → fit → test metrics → files.

``train(cfg)`` is what ``dq-train`` runs inside Hydra and what a notebook or a test calls
with a config from Hydra's compose API. Everything a run produces lands in its run
directory (DESIGN.md's output contract); run.json says ``completed`` only at the very end.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dq import data, models
from dq.console import RichProgress, config_summary, metrics_table
from dq.device import resolve_device, seed_everything, set_threads
from dq.engine.loop import SilentProgress, check_monitor, fit
from dq.engine.optim import build_optimizer, build_scheduler
from dq.errors import DQUserError
from dq.evaluation import evaluate
from dq.loggers import LoggerContext, build_loggers, flatten_config
from dq.objectives.registry import build_objective, build_transforms
from dq.outputs import HYDRA_DIR, METRICS_JSON, RunRecord, default_run_dir, discard_unstarted, write_json, write_text
from dq.spec import to_spec


def resolve_run_dir(experiment_name: str, run_dir: str | Path | None) -> Path:
    """An explicit directory, else Hydra's output directory, else ``outputs/<experiment>/<time>``."""
    if run_dir is not None:
        return Path(run_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return default_run_dir(experiment_name)


def hydra_task_overrides() -> list[str] | None:
    """The command-line overrides Hydra gave this run (a sweep job's own), else None."""
    if not HydraConfig.initialized():
        return None
    return [str(item) for item in HydraConfig.get().overrides.task]


def in_sweep() -> bool:
    """True inside a job of ``dq-train -m``: a refused job keeps its directory there, so
    the sweep can list it with its error."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write .hydra/config.yaml for runs started outside ``dq-train`` (Hydra writes its own)."""
    path = run_dir / HYDRA_DIR / "config.yaml"
    if not path.exists():
        job_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        write_text(path, OmegaConf.to_yaml(job_cfg))


def train(cfg: DictConfig, run_dir: str | Path | None = None, console: Console | None = None) -> dict[str, float]:
    """Train and evaluate the run that ``cfg`` describes; return its final metrics.

    Raises:
        DQUserError: before anything is trained, for input the user can fix; the run
            directory is then removed, since it holds no result (a sweep job's is kept
            for dq.sweep.job to mark failed).
    """
    run_dir = resolve_run_dir(str(cfg.experiment_name), run_dir)
    console = console or Console()
    try:
        spec = to_spec(cfg)
        set_threads(spec.trainer.num_threads)
        device = resolve_device(str(spec.trainer.device))
        splits = data.build(spec.dataset, spec.seed)
        check_monitor(spec.trainer, splits)
        seed_everything(spec.seed)
        model = models.build(spec.model, splits.meta)
        transforms = build_transforms(spec.regularizer, splits.meta)
        notes = [note for transform in transforms for note in transform.apply(model)]
        objective = build_objective(spec.regularizer, splits.meta)
        if spec.explain.enabled:  # captum and matplotlib load only when explanations are on
            from dq.explain.run import check_explain

            check_explain(spec.explain, splits.meta, model)
        loggers = build_loggers(spec.logger, LoggerContext(run_dir, spec.experiment_name))  # opens stores now
    except DQUserError:
        if not in_sweep():
            discard_unstarted(run_dir)
        raise

    record = RunRecord(run_dir, spec.seed, overrides=hydra_task_overrides())
    save_config(cfg, run_dir)
    record.start(device)
    try:
        loggers.start(flatten_config(cfg))
        total, trainable = models.count_parameters(model)
        console.print(config_summary(spec, splits.meta, str(device), (total, trainable), run_dir))
        for note in notes:
            console.print(note, markup=False, highlight=False, soft_wrap=True)
        optimizer = build_optimizer(spec.optimizer, model.parameters())
        scheduler = build_scheduler(spec.scheduler, optimizer, spec.trainer.epochs)
        progress = RichProgress(console) if spec.trainer.progress else SilentProgress()
        with progress if isinstance(progress, RichProgress) else nullcontext():
            result = fit(
                model,
                objective,
                splits,
                trainer=spec.trainer,
                optimizer=optimizer,
                scheduler=scheduler,
                device=device,
                seed=spec.seed,
                run_dir=run_dir,
                progress=progress,
                on_epoch=loggers.log_epoch,
            )

        model.load_state_dict(result.best_state)
        for transform in transforms:  # checkpoints keep LoRA's adapters; evaluate what finish gives
            model = transform.finish(model)
        metrics = evaluate(model, splits, eval_cfg=spec.eval, trainer=spec.trainer, device=device, seed=spec.seed)
        metrics.update(
            {
                "params/total": total,
                "params/trainable": trainable,
                "params/trainable_fraction": trainable / total if total else 0.0,
                "time/train_s": result.train_time_s,
                "train/best_epoch": result.best_epoch,
                "train/selected_epoch": result.selected_epoch,
                "train/epochs_run": len(result.history),
            }
        )
        write_json(run_dir / METRICS_JSON, metrics)  # test metrics are safe before explaining
        loggers.log_final(metrics)
        if spec.explain.enabled:
            from dq.explain.run import EXPLANATIONS, explain_run

            explained = explain_run(model, splits, splits.meta, spec.explain, run_dir, device, spec.seed)
            metrics.update(explained)
            write_json(run_dir / METRICS_JSON, metrics)
            loggers.log_final(explained)
            loggers.log_artifacts(sorted((run_dir / EXPLANATIONS).glob("*.png")), folder=EXPLANATIONS)
        record.finish()
    except BaseException as error:
        record.fail(error)
        loggers.close(error)
        raise
    loggers.close()
    console.print(metrics_table(metrics))
    console.print(str(run_dir), markup=False, highlight=False, soft_wrap=True)
    return metrics
