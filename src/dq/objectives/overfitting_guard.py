"""The catastrophic-overfitting guard of fast adversarial training.

FGSM training can overfit catastrophically: within an epoch the model learns to defeat the
one-step attack while its robustness to a multi-step attack collapses to near zero (Wong,
Rice & Kolter 2020, "Fast is better than free", https://arxiv.org/abs/2001.03994, §5; they
stop early on the PGD accuracy of a training minibatch). The guard watches the PGD accuracy
the adversarial term already measures for epoch selection (``val/robust_accuracy``: a
seeded PGD on fixed validation examples, every ``val_every`` epochs) rather than attacking
a batch of its own: one attack serves both, so the check costs nothing beyond it, and the
guard's best epoch is the one epoch selection on that metric picks. When that accuracy
falls more than ``drop`` below its best so far (``collapsed``), the guard asks the engine
to stop (``StopRequest``) and to keep the weights of its best epoch, which it holds as a
CPU copy. Epochs without a measurement (NaN) change nothing.

``GuardedTerm`` wraps any adversarial term: it takes over the term's name, weight and
declared capabilities and passes ``attack`` and ``last_example_losses`` through, so the
objective and the terms that build on the adversarial one see no difference, and it adds
``stop_request`` and the state a resumed run needs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dq import metric_keys as keys
from dq.attacks import PGD
from dq.data_records import Batch, Split
from dq.objectives.base import StopRequest, Term


def collapsed(best: float, current: float, drop: float) -> bool:
    """True when ``current`` robust accuracy lies more than ``drop`` below ``best`` (both in [0, 1]).

    A run whose robust accuracy never rose above ``drop`` cannot collapse by this rule: there
    was nothing to lose."""
    return best - current > drop


class OverfittingGuard:
    """The best value of ``metric`` (a robust accuracy the wrapped term logs), its epoch and
    weights, and whether it has collapsed.

    Args:
        metric: the key of the accuracy watched (``val/robust_accuracy``).
        drop: the fall below the best accuracy that counts as a collapse.
    """

    def __init__(self, metric: str, drop: float) -> None:
        self.metric = metric
        self.drop = drop
        self.epochs = 0  # update calls so far = the epoch just finished
        self.best = -math.inf
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.fired_epoch = 0  # 0: has not fired
        self.fired_value = math.nan

    def update(self, accuracy: float, model: nn.Module) -> bool:
        """Record one epoch's ``accuracy`` (NaN: not measured that epoch); keep the weights
        when it is the best; True when it collapsed."""
        self.epochs += 1
        if math.isnan(accuracy):
            return False
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, self.epochs
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        if collapsed(self.best, accuracy, self.drop):
            self.fired_epoch, self.fired_value = self.epochs, accuracy
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "fired_epoch": self.fired_epoch,
            "fired_value": self.fired_value,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs, self.best = int(state["epochs"]), float(state["best"])
        self.best_epoch, self.fired_epoch = int(state["best_epoch"]), int(state["fired_epoch"])
        self.best_weights, self.fired_value = state["best_weights"], float(state["fired_value"])


class GuardedTerm(Term):
    """An adversarial term with the overfitting guard after each epoch (see the module docstring).

    Logs, in the epoch it fires, ``<name>/co_guard_fired_epoch``; its ``StopRequest`` puts ``train/co_guard_fired_epoch``
    and ``train/co_guard_rollback_epoch`` into metrics.json.
    """

    def __init__(self, term: Term, guard: OverfittingGuard) -> None:
        self.term = term
        self.guard = guard
        self.name, self.weight, self.task_share = term.name, term.weight, term.task_share
        self.reads_logits = term.reads_logits
        self.val_metrics, self.needs, self.teacher_dir = term.val_metrics, term.needs, term.teacher_dir

    @property
    def attack(self) -> PGD:
        """The wrapped term's training attack (robust_fairness attacks the validation split with it)."""
        return self.term.attack

    @property  # type: ignore[override]
    def last_example_losses(self) -> torch.Tensor | None:
        """The wrapped term's per-example losses of its last call."""
        return self.term.last_example_losses

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        return self.term(model, batch, logits)

    def start_fit(self, epochs: int) -> None:
        self.term.start_fit(epochs)

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """The wrapped term's values; its robust accuracy goes to the guard, and a collapse is
        noted (the engine then stops)."""
        values = dict(self.term.end_epoch(model, val, device))
        if self.guard.fired_epoch:
            return values
        if self.guard.update(values.get(self.guard.metric, math.nan), model):
            values[f"{self.name}/co_guard_fired_epoch"] = float(self.guard.fired_epoch)
        return values

    def stop_request(self) -> StopRequest | None:
        """Once fired: stop, keeping the weights of the guard's best epoch."""
        guard = self.guard
        if not guard.fired_epoch:
            return None
        reason = (
            f"catastrophic overfitting guard: {guard.metric} fell from {guard.best:.3f} (epoch {guard.best_epoch}) "
            f"to {guard.fired_value:.3f} in epoch {guard.fired_epoch}, more than {guard.drop:g} below it; training "
            f"stopped, keeping the weights of epoch {guard.best_epoch} at the latest"
        )
        metrics = {
            keys.train("co_guard_fired_epoch"): guard.fired_epoch,
            keys.train("co_guard_rollback_epoch"): guard.best_epoch,
        }
        return StopRequest(reason, guard.best_epoch, guard.best_weights, metrics)

    def state_dict(self) -> dict[str, Any]:
        """The guard's best accuracy, epoch and weights (and the wrapped term's state, if any)."""
        state = {"guard": self.guard.state_dict()}
        term_state = self.term.state_dict()
        if term_state is not None:
            state["term"] = term_state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.guard.load_state_dict(state["guard"])
        if "term" in state:
            self.term.load_state_dict(state["term"])
