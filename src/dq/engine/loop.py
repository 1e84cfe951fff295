"""The training loop: epochs of an ``Objective`` over batches, and validation. It knows
nothing of which regularizers the objective holds; a term that must act between epochs
does so through its hooks (``Term``, dq.objectives.base).

``fit`` strings the parts together: ``train_epoch`` (one pass, AMP, loss scaling, gradient
clipping), ``validate`` (the ``val/...`` metrics) and the objective's ``end_epoch``; what
happens around the epochs (pre-emption, early stopping and epoch selection, a term's stop
request and its rollback, metrics.jsonl, best.pt and last.pt, loggers, progress) is a list
of callbacks (dq.engine.callbacks). On several processes (``FitSettings.ranks``,
dq.engine.ranks) each rank trains on its shard through DDP; rank 0 alone validates and
writes, and tells the others what it decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from dq import metric_keys as keys
from dq.config.trainer import TrainerConfig
from dq.data_records import Splits
from dq.device import autocast, uses_amp
from dq.engine import preemption
from dq.engine.batching import LoaderBatches, TensorBatches, train_batches
from dq.engine.callbacks import FitCallback, FitResult, FitState, interrupted, standard_callbacks
from dq.engine.checkpoint import Checkpointer, ResumePoint, restore
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.engine.nonfinite import BatchGuard, all_skipped_line, stop_line
from dq.engine.ranks import Ranks
from dq.errors import DQUserError, TrainingDiverged
from dq.inference import predict_logits
from dq.metrics import split_metrics
from dq.objectives.adversarial import VAL_ROBUST_ACCURACY
from dq.objectives.base import Objective


@dataclass(frozen=True)
class FitSettings:
    """How ``fit`` trains and where it writes, beside the objects it trains.

    ``run_dir``: metrics.jsonl and checkpoints/ go there (None: nothing is written).
    ``resume_from`` (``dq.rundir.resume.load_resume_point``) continues a run from its
    last.pt: the objects passed to ``fit`` are freshly built as for the original run, and
    their state is loaded from it, down to the batch a pre-empted epoch stopped at.
    ``ranks`` (dq.engine.ranks): this process's place in a run on several processes. Every
    rank calls ``fit`` with the same objects; only rank 0 validates, selects the epoch and
    writes (the others' ``run_dir`` is ignored); the others follow its decisions.
    """

    trainer: TrainerConfig
    device: torch.device
    seed: int
    run_dir: Path | None = None
    resume_from: ResumePoint | None = None
    ranks: Ranks = field(default_factory=Ranks.single)


ROBUST_HINT = (
    "it needs an active adversarial term, regularizer.adversarial.weight > 0; for natural training monitor "
    "val/loss or val/accuracy"
)


def monitorable_metrics(splits: Splits) -> list[str]:
    names = [keys.val(keys.ACCURACY), keys.val(keys.LOSS), keys.val(keys.ECE)]
    if splits.meta.has_groups and splits.val.group is not None:
        names += [keys.worst_accuracy(keys.GROUP, keys.VAL), *(keys.val(gap) for gap in keys.GAPS)]
    return names


def check_monitor(trainer: TrainerConfig, splits: Splits, measured: Sequence[str] = ()) -> None:
    """The early-stopping metric must be one the loop measures on this data, or one the
    objective's terms add (``measured``: ``Objective.val_metrics``)."""
    allowed = [*monitorable_metrics(splits), *measured]
    monitor = trainer.early_stopping.monitor
    if monitor not in allowed:
        hint = f" ({ROBUST_HINT})" if monitor == VAL_ROBUST_ACCURACY else ""
        raise DQUserError(
            f"trainer.early_stopping.monitor={monitor!r} is not measured on this data{hint}; allowed: "
            f"{', '.join(allowed)}"
        )


def train_epoch(
    model: nn.Module,
    objective: Objective,
    batches: TensorBatches | LoaderBatches,
    *,
    trainer: TrainerConfig,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    callbacks: Sequence[FitCallback] = (),
    state: EpochState | None = None,
    epoch: int = 1,
    ranks: Ranks | None = None,
    net: nn.Module | None = None,
) -> dict[str, float]:
    """One pass over ``batches``; returns ``train/loss``, ``train/accuracy`` and ``train/<term>``
    (and ``train/skipped_batches`` with ``trainer.nonfinite=skip_batch``).

    Term values and correct predictions are summed on the device and read once at the end
    (and at each progress refresh, ``FitCallback.on_batch_end``, about 50 an epoch), so the
    loop does not wait on the device every batch.

    With ``state`` (the loop's), the pass continues where that state stands (a resumed
    epoch: its batch order is drawn again from the generator state the epoch began with,
    and the batches already done are skipped) and stops early, between two batches, when
    a stop signal arrived (``dq.engine.preemption``); ``state.batches_done`` then tells.

    Each batch passes ``BatchGuard`` after its backward pass: a NaN or infinite loss, term or
    gradient never reaches the optimizer. ``trainer.nonfinite=stop`` raises at once,
    ``skip_batch`` drops that batch's gradients and counts it (dq.engine.nonfinite).

    On several processes (``ranks``), ``net`` is the DDP module the objective runs through
    (``model`` keeps the plain parameters); after each backward pass, and again after each
    step, a one-flag all-reduce tells every rank whether any met a non-finite value, or a
    stop signal, so they skip or stop at the same batch; the returned metrics are summed
    over all ranks.

    Raises:
        TrainingDiverged: a non-finite batch under ``stop`` (one line: epoch, batch, culprit),
            or an epoch whose every batch was skipped under ``skip_batch``.
    """
    ranks = ranks or Ranks.single()
    net = net if net is not None else model
    amp, amp_dtype = uses_amp(device, trainer.amp), str(trainer.amp_dtype)
    skip_nonfinite = str(trainer.nonfinite) == "skip_batch"
    guard = BatchGuard(model, gradients=not scaler.is_enabled())  # a float16 scaler owns inf gradients
    model.train()
    if state is None:
        state = EpochState.begin(batches.generator, device)
    else:
        batches.generator.set_state(state.order_state)
    total = len(batches)
    refresh_every = max(1, total // 50)
    for index, batch in enumerate(islice(batches, state.batches_done, None), start=state.batches_done + 1):
        with autocast(device, amp, amp_dtype):
            out = objective(net, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        problem = guard.problem(out)  # before unscale_/clipping: a skipped batch leaves the scaler as it was
        if ranks.several:
            (bad,) = ranks.any_flags(problem is not None, device=device)
            if bad and problem is None:
                problem = "another process of this run met a non-finite loss, term or gradient"
        if problem is not None and not skip_nonfinite:
            raise TrainingDiverged(stop_line(epoch, index, total, problem))
        if problem is not None:
            optimizer.zero_grad(set_to_none=True)
            state.skip()
        else:
            if trainer.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            state.add(out.terms, (out.logits.detach().argmax(dim=1) == batch.y).sum(), len(batch))
        if callbacks and (index % refresh_every == 0 or index == total):
            running_loss = state.running_loss()
            for callback in callbacks:
                callback.on_batch_end(index, running_loss)
        (stop,) = ranks.any_flags(preemption.stop_requested(), device=device)
        if index < total and stop:
            break
    if state.batches_done == total and state.skipped == total:
        raise TrainingDiverged(all_skipped_line(epoch, total))
    ranks.sum_state(state, device)
    record = state.record()
    if skip_nonfinite:
        record[keys.train("skipped_batches")] = state.skipped
    return record


def validate(model: nn.Module, splits: Splits, *, trainer: TrainerConfig, device: torch.device) -> dict[str, float]:
    """The ``val/...`` metrics of the model as it is now (its train/eval modes are kept)."""
    val = splits.val
    amp, amp_dtype = uses_amp(device, trainer.amp), str(trainer.amp_dtype)
    logits = predict_logits(model, val, device, trainer.eval_batch_size, amp, amp_dtype)
    return split_metrics(logits, val.y, "val", val.group, splits.meta.group_names)


def check_finite(epoch: int, train: dict[str, float]) -> None:
    """Stop a run whose epoch-mean training loss, or any term's, is not finite: a backstop
    behind the per-batch guard, for finite batch values whose sum overflowed.

    Raises:
        TrainingDiverged: one line naming the epoch and the first such term.
    """
    for key, value in train.items():
        if key not in (keys.train(keys.ACCURACY), keys.train("skipped_batches")) and not math.isfinite(value):
            term = "task" if key == keys.train(keys.LOSS) else keys.parse(key).metric
            raise TrainingDiverged(
                f"epoch {epoch}: training loss term {term!r} is {value}; lower optimizer.lr or set trainer.grad_clip"
            )


def fit(
    model: nn.Module,
    objective: Objective,
    splits: Splits,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    settings: FitSettings,
    callbacks: Sequence[FitCallback] = (),
) -> FitResult:
    """Train ``model`` in place and return the history and the selected epoch's weights.

    Before the first epoch the objective's ``start_fit`` hook learns the last one. Each
    epoch: train, validate, the objective's ``end_epoch`` hook, the scheduler step,
    then the callbacks' ``on_epoch_end``: dq.engine.callbacks' standard ones (epoch
    selection and early stopping, a term's stop request, best.pt, metrics.jsonl, last.pt),
    then ``callbacks`` (the run's loggers, a progress display). ``result.best_state`` is
    meaningful on rank 0 only.

    Raises:
        RunInterrupted: a stop signal arrived; last.pt was written after the batch that
            was running (``dq.engine.preemption``), or, on a second Ctrl-C, left as the
            epoch before wrote it.
        TrainingDiverged: a batch's loss, a term or a gradient was NaN or infinite
            (``trainer.nonfinite=stop``; the optimizer did not step on it, and last.pt and
            best.pt stay as the epoch before left them), or every batch of an epoch was
            skipped (``skip_batch``).
    """
    trainer, ranks = settings.trainer, settings.ranks
    check_monitor(trainer, splits, objective.val_metrics())
    run_dir = settings.run_dir if ranks.main else None
    run, batches, state = _start(model, objective, splits, optimizer, scheduler, settings, run_dir)
    callbacks = [*standard_callbacks(trainer, run_dir), *callbacks]
    net = ranks.wrap(model, settings.device)  # DDP starts every rank from rank 0's weights
    objective.start_fit(trainer.epochs)
    for callback in callbacks:
        callback.on_fit_start(run)
    result, first = run.result, run.epoch + 1
    result.stopped_early = run.resumed and any(callback.should_stop(run) for callback in callbacks)
    with preemption.catching_stop_signals():
        for run.epoch in range(first, trainer.epochs + 1):
            if result.stopped_early:
                break
            state = state or EpochState.begin(run.generator, settings.device)
            for callback in callbacks:
                callback.on_epoch_start(run, state)
            train = _train_epoch(run, batches, state, callbacks, net)
            record = _epoch_record(run, splits, train, state.elapsed())
            if scheduler is not None:
                scheduler.step()
            record[keys.time("epoch_s")] = state.elapsed()
            result.train_time_s += record[keys.time("epoch_s")]
            result.history.append(record)
            for callback in callbacks:
                callback.on_epoch_end(run, record)
            state = None
            result.stopped_early = any(callback.should_stop(run) for callback in callbacks)
    for callback in callbacks:
        callback.on_fit_end(run)
    return result


def _train_epoch(
    run: FitState,
    batches: TensorBatches | LoaderBatches,
    state: EpochState,
    callbacks: Sequence[FitCallback],
    net: nn.Module,
) -> dict[str, float]:
    """``train_epoch`` on the fit's objects from where ``state`` stands.

    Raises:
        RunInterrupted: a stop signal ended the epoch between two batches (after the
            callbacks' ``on_stop``: last.pt with the partial epoch), or a second Ctrl-C in
            the middle of one (last.pt as the epoch before left it).
        TrainingDiverged: as ``train_epoch``, or an epoch-mean loss that is not finite.
    """
    parts = {"trainer": run.trainer, "optimizer": run.optimizer, "scaler": run.scaler, "device": run.device}
    try:
        train = train_epoch(
            run.model,
            run.objective,
            batches,
            **parts,
            callbacks=callbacks,
            state=state,
            epoch=run.epoch,
            ranks=run.ranks,
            net=net,
        )
    except KeyboardInterrupt:  # a second Ctrl-C: no batch to finish
        raise interrupted(run, state, at_once=True) from None
    if state.batches_done < len(batches):
        for callback in callbacks:
            callback.on_stop(run, state)
        raise interrupted(run, state)
    check_finite(run.epoch, train)
    return train


def _start(
    model: nn.Module,
    objective: Objective,
    splits: Splits,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    settings: FitSettings,
    run_dir: Path | None,
) -> tuple[FitState, TensorBatches | LoaderBatches, EpochState | None]:
    """The fit's state, its training batches, and, when resuming inside an epoch, that
    epoch's state; a resumed run's objects are loaded from last.pt (``fit.epoch``: the
    epochs done)."""
    trainer, device, ranks, point = settings.trainer, settings.device, settings.ranks, settings.resume_from
    es = trainer.early_stopping
    float16 = uses_amp(device, trainer.amp) and str(trainer.amp_dtype) == "float16"
    generator = torch.Generator().manual_seed(settings.seed + 1)
    batches = train_batches(
        splits.train,
        trainer.batch_size,
        device,
        generator,
        str(trainer.loader),
        trainer.num_workers,
        ranks.rank,
        ranks.world,
    )
    run = FitState(
        model=model,
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=float16),  # bfloat16 needs no loss scaling
        generator=generator,
        stopper=EarlyStopping(es.monitor, str(es.mode), es.patience, es.min_delta, es.enabled),
        checkpoints=Checkpointer(run_dir, trainer.checkpoints, es.monitor),
        trainer=trainer,
        device=device,
        ranks=ranks,
        batches=len(batches),
        resumed=point is not None,
    )
    model.to(device)
    if point is None:
        return run, batches, None
    parts = {"optimizer": optimizer, "scheduler": scheduler, "scaler": run.scaler, "stopper": run.stopper}
    state = restore(point, model=model, objective=objective, generator=generator, device=device, **parts)
    run.epoch = point.epochs_done
    run.result.history = list(point.history)
    run.result.selected_epoch, run.result.best_state = point.selected_epoch, point.best_state
    run.result.train_time_s = point.train_time_s
    if state is not None and not ranks.main:  # last.pt holds all ranks' sums: rank 0 carries them on
        state.seen, state.correct, state.sums = 0, torch.zeros((), device=device), {}
    return run, batches, state


def _epoch_record(run: FitState, splits: Splits, train: dict[str, float], train_seconds: float) -> dict[str, float]:
    """The epoch's metrics.jsonl line: lr, train, val and the terms' ``end_epoch`` values,
    made on rank 0 and, with its objective state, given to every rank (the same decisions
    on every rank)."""
    ranks, objective = run.ranks, run.objective
    record: dict[str, float] = {"epoch": run.epoch, "lr": run.optimizer.param_groups[0]["lr"], **train}
    if ranks.main:
        record.update(validate(run.model, splits, trainer=run.trainer, device=run.device))
        record.update(objective.end_epoch(run.model, splits.val, run.device))
    if ranks.several:
        record, objective_state = ranks.from_main((record, objective.state_dict() if ranks.main else None))
        if not ranks.main:
            objective.load_state_dict(objective_state)
    record[keys.time("train_epoch_s")] = train_seconds
    return record
