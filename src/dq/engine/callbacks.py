"""What happens around ``fit``'s epochs, as callbacks of one kind (the idea of Lightning's
``Callback``).

``fit`` (dq.engine.loop) trains, validates, asks the objective's terms and, on several
processes, keeps the ranks in step; everything else is a ``FitCallback`` in one list,
called in order at named points of the fit:

- ``on_fit_start``: once, after a resumed run's state was restored;
- ``on_epoch_start``: before an epoch's first batch (a resumed epoch: its next batch);
- ``on_batch_end``: at each progress refresh inside an epoch (``train_epoch``);
- ``on_epoch_end``: with the epoch's record, already in ``result.history``;
- ``should_stop``: asked after each epoch (and after a resume): any True ends the fit;
- ``on_stop``: a stop signal ended an epoch between two batches (``RunInterrupted`` follows);
- ``on_fit_end``: once, after the last epoch.

``fit``'s own list, in this order: ``Preemption``, ``EarlyStop``, ``TermStop``,
``BestCheckpoint``, ``MetricsLog``, ``LastCheckpoint``; the caller's follow
(``LogEpochs`` for the run's loggers, ``ShowProgress`` for a display). The order is the
order of the writes that make a resume exact (dq.rundir.resume): best.pt, the
metrics.jsonl line, last.pt, and the loggers only after last.pt, so a resumed run does
not log an epoch twice. Every rank runs the same callbacks; only rank 0 is given a run
directory to write to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from dq.config.trainer import TrainerConfig
from dq.engine import preemption
from dq.engine.checkpoint import Checkpointer
from dq.engine.early_stopping import EarlyStopping
from dq.engine.epoch_state import EpochState
from dq.engine.ranks import Ranks
from dq.errors import RunInterrupted
from dq.objectives.base import Objective, StopRequest
from dq.rundir.layout import METRICS_JSONL
from dq.rundir.write import append_jsonl


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None  # best by the monitored metric
    selected_epoch: int | None = None  # whose weights are in best_state (trainer.select)
    best_state: dict[str, torch.Tensor] | None = None
    train_time_s: float = 0.0
    stopped_early: bool = False
    stop_request: StopRequest | None = None  # a term ended training (Objective.stop_request)


@dataclass
class FitState:
    """A fit in progress, as its callbacks see it: the objects it trains and steps (whose
    states last.pt holds), where it stands, and its ``result``, the one part callbacks write."""

    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # the batch order's
    stopper: EarlyStopping
    checkpoints: Checkpointer
    trainer: TrainerConfig
    device: torch.device
    ranks: Ranks
    batches: int  # per epoch, on this rank
    resumed: bool = False
    epoch: int = 0  # the epoch in progress (or just ended)
    result: FitResult = field(default_factory=FitResult)


class FitCallback:
    """One concern around the epochs of ``fit``; every hook does nothing unless overridden
    (see the module docstring for when each runs)."""

    def on_fit_start(self, fit: FitState) -> None:
        """Once, before the first epoch (after a resumed run's state was restored)."""

    def on_epoch_start(self, fit: FitState, state: EpochState) -> None:
        """Before the epoch's first batch, or a resumed epoch's next one (``state.batches_done``)."""

    def on_batch_end(self, batches_done: int, running_loss: float) -> None:
        """At each progress refresh inside an epoch: batches done, the mean task loss so far."""

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        """After the epoch: ``record`` is its metrics.jsonl line, the last of ``fit.result.history``."""

    def should_stop(self, fit: FitState) -> bool:
        """Asked after each epoch (and after a resume): True ends the fit there."""
        return False

    def on_stop(self, fit: FitState, state: EpochState) -> None:
        """A stop signal ended the epoch after batch ``state.batches_done``; ``RunInterrupted`` follows."""

    def on_fit_end(self, fit: FitState) -> None:
        """Once, after the last epoch (not when the fit raised)."""


def cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def interrupted(fit: FitState, state: EpochState | None, *, at_once: bool = False) -> RunInterrupted:
    """The one line (and the where, for run.json) of a run stopped in epoch ``fit.epoch``:
    after batch ``state.batches_done``, before the epoch began (no ``state``), or ``at_once``
    by a second Ctrl-C in the middle of a batch, when last.pt stays at the end of the epoch
    before."""
    epoch, batches, checkpoints = fit.epoch, fit.batches, fit.checkpoints
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


class Preemption(FitCallback):
    """A stop signal (dq.engine.preemption) that arrived after an epoch's last batch ends the
    run before the next epoch begins; one inside an epoch ends it after the running batch
    (``train_epoch``), and ``fit`` raises there, after ``LastCheckpoint.on_stop``."""

    def on_epoch_start(self, fit: FitState, state: EpochState) -> None:
        (stop,) = fit.ranks.any_flags(preemption.stop_requested(), device=fit.device)
        if stop:
            raise interrupted(fit, None)


class EarlyStop(FitCallback):
    """Epoch selection and early stopping on ``trainer.early_stopping.monitor``
    (``fit.stopper``, whose state last.pt keeps): the best epoch's weights, or each epoch's
    with ``trainer.select=last``, become ``result.best_state``; without any (every
    monitored value NaN), the last epoch's."""

    def __init__(self, select_last: bool) -> None:
        self.select_last = select_last

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        if fit.stopper.update(fit.epoch, record[fit.stopper.monitor]) or self.select_last:
            fit.result.selected_epoch = fit.epoch
            if fit.ranks.main:
                fit.result.best_state = cpu_copy(fit.model)

    def should_stop(self, fit: FitState) -> bool:
        return fit.stopper.should_stop

    def on_fit_end(self, fit: FitState) -> None:
        result = fit.result
        if result.best_state is None and fit.ranks.main:  # every epoch's monitored value was NaN
            result.selected_epoch, result.best_state = len(result.history), cpu_copy(fit.model)
        result.best_epoch = fit.stopper.best_epoch


class TermStop(FitCallback):
    """A term's request to end training (``Objective.stop_request``, asked after
    ``end_epoch``): noted in ``result.stop_request``; when it names an epoch before the
    selected one (or none is selected yet), that epoch's weights become the selected ones
    (``BestCheckpoint`` then writes them to best.pt). Every rank asks alike: the objective's
    state came from rank 0."""

    def on_fit_start(self, fit: FitState) -> None:
        if fit.resumed:  # a run stopped by a term stays stopped
            fit.result.stop_request = fit.objective.stop_request()

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        request = fit.objective.stop_request()
        if request is None:
            return
        result = fit.result
        result.stop_request = request
        epoch, state = request.rollback_epoch, request.rollback_state
        if epoch is None or state is None or (result.selected_epoch is not None and result.selected_epoch <= epoch):
            return
        result.selected_epoch, result.best_state = epoch, state

    def should_stop(self, fit: FitState) -> bool:
        return fit.result.stop_request is not None


class BestCheckpoint(FitCallback):
    """checkpoints/best.pt: rewritten whenever ``result.best_state`` changed (a new selected
    epoch, or a term's rollback), with the selected epoch's monitored value."""

    def __init__(self) -> None:
        self.written: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, fit: FitState) -> None:
        self.written = fit.result.best_state  # a resumed run's best.pt is already there

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        self._write_if_new(fit)

    def on_fit_end(self, fit: FitState) -> None:
        self._write_if_new(fit)

    def _write_if_new(self, fit: FitState) -> None:
        result = fit.result
        if result.best_state is None or result.best_state is self.written or result.selected_epoch is None:
            return
        monitor = fit.checkpoints.monitor
        value = next((r[monitor] for r in result.history if r.get("epoch") == result.selected_epoch), math.nan)
        fit.checkpoints.save_best(result.best_state, result.selected_epoch, value)
        self.written = result.best_state


class MetricsLog(FitCallback):
    """One line per epoch in ``run_dir``/metrics.jsonl (nothing without a run directory)."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir

    def on_fit_start(self, fit: FitState) -> None:
        if self.run_dir is not None:
            Path(self.run_dir).mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        if self.run_dir is not None:
            append_jsonl(Path(self.run_dir) / METRICS_JSONL, record)


class LastCheckpoint(FitCallback):
    """checkpoints/last.pt, all a continued run needs: after each epoch, and after the
    batch a stop signal ended an epoch at (with that epoch's partial state)."""

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        self._save(fit, fit.epoch)

    def on_stop(self, fit: FitState, state: EpochState) -> None:
        self._save(fit, fit.epoch - 1, partial=state)

    def _save(self, fit: FitState, epochs_done: int, partial: EpochState | None = None) -> None:
        fit.checkpoints.save_last(
            epochs_done,
            model=fit.model,
            optimizer=fit.optimizer,
            scheduler=fit.scheduler,
            scaler=fit.scaler,
            stopper=fit.stopper,
            generator=fit.generator,
            objective=fit.objective,
            selected_epoch=fit.result.selected_epoch,
            partial=partial,
        )


def standard_callbacks(trainer: TrainerConfig, run_dir: Path | None) -> list[FitCallback]:
    """The callbacks every fit runs, in the order of its writes (see the module docstring);
    ``run_dir``: rank 0's run directory (None: metrics.jsonl is not written)."""
    return [
        Preemption(),
        EarlyStop(select_last=trainer.select == "last"),
        TermStop(),
        BestCheckpoint(),
        MetricsLog(run_dir),
        LastCheckpoint(),
    ]


class EpochLogger(Protocol):
    """Anything that takes each epoch's record (the run's loggers, dq.loggers.session)."""

    def log_epoch(self, record: Mapping[str, float]) -> None: ...


class LogEpochs(FitCallback):
    """Hands each epoch's record to the run's loggers, after last.pt was written."""

    def __init__(self, loggers: EpochLogger) -> None:
        self.loggers = loggers

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        self.loggers.log_epoch(record)


class ProgressReporter(Protocol):
    """What a display is told (dq.console.RichProgress): it never makes the loop wait."""

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None: ...
    def advance(self, batches_done: int, running_loss: float) -> None: ...
    def end_epoch(self, record: dict[str, float]) -> None: ...


class ShowProgress(FitCallback):
    """Tells a progress display where the fit stands."""

    def __init__(self, display: ProgressReporter) -> None:
        self.display = display

    def on_epoch_start(self, fit: FitState, state: EpochState) -> None:
        self.display.start_epoch(fit.epoch, fit.trainer.epochs, fit.batches)
        if state.batches_done:
            self.display.advance(state.batches_done, state.running_loss())

    def on_batch_end(self, batches_done: int, running_loss: float) -> None:
        self.display.advance(batches_done, running_loss)

    def on_epoch_end(self, fit: FitState, record: dict[str, float]) -> None:
        self.display.end_epoch(record)
