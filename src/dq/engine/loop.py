"""The training loop: epochs of an ``Objective`` over batches, validation, early stopping
and checkpoints. It knows nothing of which regularizers the objective holds; a term that
must act between epochs does so through ``Objective.end_epoch``.

``fit`` strings the parts together: ``train_epoch`` (one pass, AMP, loss scaling, gradient
clipping), ``validate`` (the ``val/...`` metrics) and ``Checkpointer`` (best.pt, last.pt).
On several processes (``ranks``, dq.engine.ranks) each rank trains on its shard through
DDP; rank 0 alone validates and writes, and tells the others what it decided.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from dq.config.trainer import TrainerConfig
from dq.data_records import Splits
from dq.device import autocast, uses_amp
from dq.engine import checkpoint, preemption
from dq.engine.batching import LoaderBatches, TensorBatches, train_batches
from dq.engine.checkpoint import ResumePoint, restore
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.engine.nonfinite import BatchGuard, all_skipped_line, stop_line
from dq.engine.ranks import Ranks
from dq.errors import DQUserError, RunInterrupted, TrainingDiverged
from dq.inference import predict_logits
from dq.metrics import split_metrics
from dq.objectives.base import Objective, StopRequest
from dq.rundir.layout import METRICS_JSONL
from dq.rundir.write import append_jsonl


class ProgressReporter(Protocol):
    """What the loop tells a display: it never waits on one."""

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None: ...
    def advance(self, batches_done: int, running_loss: float) -> None: ...
    def end_epoch(self, record: dict[str, float]) -> None: ...


class SilentProgress:
    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        pass

    def advance(self, batches_done: int, running_loss: float) -> None:
        pass

    def end_epoch(self, record: dict[str, float]) -> None:
        pass


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # best by the monitored metric
    selected_epoch: int | None = None  # whose weights are in best_state (trainer.select)
    best_state: dict[str, torch.Tensor] | None = None
    train_time_s: float = 0.0
    stopped_early: bool = False
    stop_request: StopRequest | None = None  # a term ended training (Objective.stop_request)


VAL_ROBUST_ACCURACY = "val/robust_accuracy"
ROBUST_HINT = (
    "it needs an active adversarial term, regularizer.adversarial.weight > 0; for natural training monitor "
    "val/loss or val/accuracy"
)


def monitorable_metrics(splits: Splits) -> list[str]:
    names = ["val/accuracy", "val/loss", "val/ece"]
    if splits.meta.has_groups and splits.val.group is not None:
        names += ["val/dp_diff", "val/eo_diff"]
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


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_epoch(
    model: nn.Module,
    objective: Objective,
    batches: TensorBatches | LoaderBatches,
    *,
    trainer: TrainerConfig,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    progress: ProgressReporter,
    state: EpochState | None = None,
    epoch: int = 1,
    ranks: Ranks | None = None,
    net: nn.Module | None = None,
) -> dict[str, float]:
    """One pass over ``batches``; returns ``train/loss``, ``train/accuracy`` and ``train/<term>``
    (and ``train/skipped_batches`` with ``trainer.nonfinite=skip_batch``).

    Term values and correct predictions are summed on the device and read once at the end
    (and at each progress refresh), so the loop does not wait on the device every batch.

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
        if index % refresh_every == 0 or index == total:
            progress.advance(index, state.running_loss())
        (stop,) = ranks.any_flags(preemption.stop_requested(), device=device)
        if index < total and stop:
            break
    if state.batches_done == total and state.skipped == total:
        raise TrainingDiverged(all_skipped_line(epoch, total))
    ranks.sum_state(state, device)
    record = state.record()
    if skip_nonfinite:
        record["train/skipped_batches"] = state.skipped
    return record


def validate(model: nn.Module, splits: Splits, *, trainer: TrainerConfig, device: torch.device) -> dict[str, float]:
    """The ``val/...`` metrics of the model as it is now (its train/eval modes are kept)."""
    val = splits.val
    amp, amp_dtype = uses_amp(device, trainer.amp), str(trainer.amp_dtype)
    logits = predict_logits(model, val, device, trainer.eval_batch_size, amp, amp_dtype)
    return split_metrics(logits, val.y, "val", val.group, splits.meta.group_names)


class Checkpointer:
    """checkpoints/best.pt and last.pt of one run, each written atomically.

    It writes nothing without a run directory or with ``trainer.checkpoints=false``; the
    loop calls it either way.
    """

    def __init__(self, run_dir: Path | None, enabled: bool, monitor: str) -> None:
        self.run_dir = run_dir
        self.writes = run_dir is not None and enabled
        self.monitor = monitor

    def save_best(self, model_state: dict[str, torch.Tensor], epoch: int, value: float) -> None:
        if self.writes:
            checkpoint.save_best(self.run_dir, model_state, epoch, self.monitor, value)

    def save_last(
        self,
        epoch: int,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        scaler: torch.amp.GradScaler,
        stopper: EarlyStopping,
        generator: torch.Generator,
        objective: Objective | None = None,
        selected_epoch: int | None = None,
        partial: EpochState | None = None,
    ) -> None:
        """Everything a continued run needs: weights, optimizer, scheduler, scaler, stopper,
        RNG, the objective's state, the selected epoch (whose weights are in best.pt) and,
        when stopped inside an epoch, that epoch's ``partial`` state. ``epoch`` counts the
        completed epochs."""
        if not self.writes:
            return
        state = {
            "epoch": epoch,
            "selected_epoch": selected_epoch,
            "objective": objective.state_dict() if objective is not None else {},
            "partial": partial.state_dict() if partial is not None else None,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict(),
            "early_stopping": stopper.state_dict(),
            "rng": checkpoint.rng_state(generator),
        }
        checkpoint.save_last(self.run_dir, state)


def check_finite(epoch: int, train: dict[str, float]) -> None:
    """Stop a run whose epoch-mean training loss, or any term's, is not finite: a backstop
    behind the per-batch guard, for finite batch values whose sum overflowed.

    Raises:
        TrainingDiverged: one line naming the epoch and the first such term.
    """
    for key, value in train.items():
        if key not in ("train/accuracy", "train/skipped_batches") and not math.isfinite(value):
            term = "task" if key == "train/loss" else key.removeprefix("train/")
            raise TrainingDiverged(
                f"epoch {epoch}: training loss term {term!r} is {value}; lower optimizer.lr or set trainer.grad_clip"
            )


def roll_back(result: FitResult, request: StopRequest, checkpoints: Checkpointer, monitor: str) -> None:
    """Note a term's stop ``request``; when it names an epoch before the selected one (or
    none is selected yet), that epoch's weights become the selected ones (and best.pt)."""
    result.stop_request = request
    epoch, state = request.rollback_epoch, request.rollback_state
    if epoch is None or state is None or (result.selected_epoch is not None and result.selected_epoch <= epoch):
        return
    value = next((r[monitor] for r in result.history if r.get("epoch") == epoch), math.nan)
    result.selected_epoch, result.best_state = epoch, state
    checkpoints.save_best(state, epoch, value)


def _interrupted(
    epoch: int, state: EpochState | None, batches: int, checkpoints: Checkpointer, *, at_once: bool = False
) -> RunInterrupted:
    """The one line (and the where, for run.json) of a run stopped in ``epoch``: after batch
    ``state.batches_done``, before the epoch began (no ``state``), or ``at_once`` by a second
    Ctrl-C in the middle of a batch, when last.pt stays at the end of the epoch before."""
    done = state.batches_done if state else 0
    signal_name = "a second SIGINT" if at_once else preemption.received_signal()
    if at_once:
        where = f"in epoch {epoch}, during batch {done + 1} of {batches}"
    elif state:
        where = f"in epoch {epoch}, after batch {done} of {batches}"
    else:
        where = f"after epoch {epoch - 1}" if epoch > 1 else "before its first batch"
    how = (
        f"continue with: dq-train resume={checkpoints.run_dir}"
        if checkpoints.writes
        else "nothing was saved to resume from (no run directory or trainer.checkpoints=false)"
    )
    at = {"signal": preemption.received_signal(), "epoch": epoch, "batch": done, "batches": batches}
    return RunInterrupted(f"stopped by {signal_name} {where}; {how}", by_user=preemption.by_user(), at=at)


def fit(
    model: nn.Module,
    objective: Objective,
    splits: Splits,
    *,
    trainer: TrainerConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    seed: int,
    run_dir: Path | None = None,
    progress: ProgressReporter | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    resume_from: ResumePoint | None = None,
    ranks: Ranks | None = None,
) -> FitResult:
    """Train ``model`` in place and return the history and the selected epoch's weights.

    Each epoch: train, validate, the objective's ``end_epoch`` hook, the scheduler step,
    early stopping, and a term's ``stop_request`` (stop after this epoch, perhaps keeping an
    earlier epoch's weights: ``roll_back``). With ``run_dir``, each epoch appends a line to metrics.jsonl and the
    Checkpointer rewrites last.pt (and best.pt when the monitored metric improves).
    ``on_epoch`` receives each epoch's record right after its metrics.jsonl line (the
    run's loggers).

    ``resume_from`` (``dq.rundir.resume.load_resume_point``) continues a run from its
    last.pt: the objects passed in are freshly built as for the original run, and their
    state is loaded from it, down to the batch a pre-empted epoch stopped at.

    ``ranks`` (dq.engine.ranks): this process's place in a run on several processes. Every
    rank calls ``fit`` with the same objects; only rank 0 validates, selects the epoch and
    writes (the others' ``run_dir`` and ``on_epoch`` are ignored); the others follow its
    decisions. ``result.best_state`` is meaningful on rank 0 only.

    Raises:
        RunInterrupted: a stop signal arrived; last.pt was written after the batch that
            was running (``dq.engine.preemption``), or, on a second Ctrl-C, left as the
            epoch before wrote it.
        TrainingDiverged: a batch's loss, a term or a gradient was NaN or infinite
            (``trainer.nonfinite=stop``; the optimizer did not step on it, and last.pt and
            best.pt stay as the epoch before left them), or every batch of an epoch was
            skipped (``skip_batch``).
    """
    check_monitor(trainer, splits, objective.val_metrics())
    ranks = ranks or Ranks.single()
    if not ranks.main:
        run_dir, on_epoch = None, None
    progress = progress or SilentProgress()
    es = trainer.early_stopping
    stopper = EarlyStopping(es.monitor, str(es.mode), es.patience, es.min_delta, es.enabled)
    float16 = uses_amp(device, trainer.amp) and str(trainer.amp_dtype) == "float16"
    scaler = torch.amp.GradScaler("cuda", enabled=float16)  # bfloat16 needs no loss scaling
    generator = torch.Generator().manual_seed(seed + 1)
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
    checkpoints = Checkpointer(run_dir, trainer.checkpoints, es.monitor)
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    result = FitResult()
    model.to(device)
    state: EpochState | None = None  # the epoch in progress, when resuming inside one
    first_epoch = 1
    if resume_from is not None:
        parts = {"optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "stopper": stopper}
        state = restore(resume_from, model=model, objective=objective, generator=generator, device=device, **parts)
        first_epoch = resume_from.epochs_done + 1
        result.history = list(resume_from.history)
        result.selected_epoch, result.best_state = resume_from.selected_epoch, resume_from.best_state
        result.train_time_s = resume_from.train_time_s
        result.stop_request = objective.stop_request()
        result.stopped_early = stopper.should_stop or result.stop_request is not None
        if state is not None and not ranks.main:  # last.pt holds all ranks' sums: rank 0 carries them on
            state.seen, state.correct, state.sums = 0, torch.zeros((), device=device), {}
    net = ranks.wrap(model, device)  # DDP starts every rank from rank 0's weights

    def save_last(epochs_done: int, partial: EpochState | None = None) -> None:
        checkpoints.save_last(
            epochs_done,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            stopper=stopper,
            generator=generator,
            objective=objective,
            selected_epoch=result.selected_epoch,
            partial=partial,
        )

    with preemption.catching_stop_signals():
        for epoch in range(first_epoch, trainer.epochs + 1):
            if result.stopped_early:
                break
            (stop,) = ranks.any_flags(preemption.stop_requested(), device=device)
            if stop:  # arrived after the last batch of the epoch before
                raise _interrupted(epoch, None, len(batches), checkpoints)
            state = state or EpochState.begin(generator, device)
            progress.start_epoch(epoch, trainer.epochs, len(batches))
            if state.batches_done:
                progress.advance(state.batches_done, state.running_loss())
            try:
                train = train_epoch(
                    model,
                    objective,
                    batches,
                    trainer=trainer,
                    optimizer=optimizer,
                    scaler=scaler,
                    device=device,
                    progress=progress,
                    state=state,
                    epoch=epoch,
                    ranks=ranks,
                    net=net,
                )
            except KeyboardInterrupt:  # a second Ctrl-C: no batch to finish, last.pt as the epoch before left it
                raise _interrupted(epoch, state, len(batches), checkpoints, at_once=True) from None
            if state.batches_done < len(batches):
                save_last(epoch - 1, partial=state)
                raise _interrupted(epoch, state, len(batches), checkpoints)
            check_finite(epoch, train)
            train_seconds = state.elapsed()
            record: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **train}
            if ranks.main:
                record.update(validate(model, splits, trainer=trainer, device=device))
                record.update(objective.end_epoch(model, splits.val, device))
            if ranks.several:  # one record, one objective state: the same decisions on every rank
                record, objective_state = ranks.from_main((record, objective.state_dict() if ranks.main else None))
                if not ranks.main:
                    objective.load_state_dict(objective_state)
            if scheduler is not None:
                scheduler.step()

            if stopper.update(epoch, record[es.monitor]) or trainer.select == "last":
                result.selected_epoch = epoch
                if ranks.main:
                    result.best_state = _cpu_copy(model)
                    checkpoints.save_best(result.best_state, epoch, record[es.monitor])
            request = objective.stop_request()  # every rank alike: the objective's state came from rank 0
            if request is not None:
                roll_back(result, request, checkpoints, es.monitor)
            record["time/train_epoch_s"] = train_seconds
            record["time/epoch_s"] = state.elapsed()
            result.train_time_s += record["time/epoch_s"]
            result.history.append(record)
            if run_dir is not None:
                append_jsonl(Path(run_dir) / METRICS_JSONL, record)
            save_last(epoch)
            if on_epoch is not None:  # after last.pt: a resumed run does not log this epoch again
                on_epoch(record)
            state = None
            progress.end_epoch(record)
            if stopper.should_stop or result.stop_request is not None:
                result.stopped_early = True

    if result.best_state is None and ranks.main:  # every epoch's monitored value was NaN
        result.selected_epoch, result.best_state = len(result.history), _cpu_copy(model)
        checkpoints.save_best(result.best_state, result.selected_epoch, float("nan"))
    result.best_epoch = stopper.best_epoch
    return result
