"""The training objective: task loss plus weighted regularizer terms.

    L = (1 − Σ task_share) · CE(clean) + Σ_k weight_k · term_k(model, batch, clean logits)

``task_share`` is 0 for ordinary penalties; a term that *replaces* part of the clean loss
(Madry's PGD training mixes clean and adversarial cross-entropy) declares its share.
The engine knows only ``Objective``: it calls it on a batch and gets the total loss, every
term's value for logging, and the clean logits. A term with weight 0 is dropped when the
objective is built, so it costs no forward or backward pass.

Every term subclasses ``Term``, whose lifecycle hooks are named, typed and do nothing by
default (the idea of Lightning's ``Callback``): a term overrides only what it uses, and
the objective, the engine and ``dq.rundir.load`` call every hook on every term, never asking
which one a term has.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from dq.data_records import Batch, DatasetMeta, Split
from dq.errors import DQUserError


class Term(ABC):
    """One regularizer: a name, a weight, and a scalar loss from (model, batch, clean logits).

    The rest is its lifecycle, each part with a default that does nothing; override what
    the term needs. Declared capabilities (class or instance attributes):

    - ``task_share``: the fraction of the clean cross-entropy this term replaces (0).
    - ``val_metrics``: the ``val/...`` metrics its ``end_epoch`` adds, which early stopping
      and epoch selection may monitor (none).
    - ``needs``: names of other terms that must be active in the same objective (none); the
      ``Objective`` refuses the combination otherwise, runs them first on each batch and
      hands them over once through ``bind``. A term that builds on another one's work on
      the same batch (reweighting its per-example losses) reads it there instead of
      repeating it.
    - ``last_example_losses``: the per-example losses [N] of the last call, with their graph,
      for a term that ``needs`` this one (None: this term keeps none).
    - ``reads_logits``: whether ``__call__`` uses the clean logits it is given (True). When no
      term does and the clean cross-entropy's weight is 0 (pure adversarial training), the
      ``Objective`` runs the clean forward without an autograd graph: it then only feeds
      ``train/accuracy``, and fast adversarial training saves that graph's cost.
    - ``teacher_dir``: a finished run whose model the term learns from (distillation; None).
      dq.objectives reads no run directory, so whoever builds the objective loads it
      (``dq.rundir.load``, called by ``dq.runner.prepare_run``) and hands the model over through
      ``bind_teacher``, frozen and in eval mode on the run's device, before the first batch.

    Hooks, in the order of a run: ``bind`` and ``bind_teacher`` (before training),
    ``start_fit`` (before the first epoch, and again when a run resumes), ``__call__``
    (every batch), ``end_epoch`` then ``stop_request`` (every epoch), ``state_dict`` /
    ``load_state_dict`` (last.pt, and a resumed run).
    """

    name: str
    weight: float
    task_share: float = 0.0
    reads_logits: bool = True
    val_metrics: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    last_example_losses: torch.Tensor | None = None
    teacher_dir: str | None = None

    @abstractmethod
    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """The term's scalar value on ``batch``; the objective multiplies it by ``weight``."""

    def bind(self, terms: dict[str, Term]) -> None:  # noqa: B027  (a hook: does nothing unless overridden)
        """Take the terms named in ``needs``, once, before the first batch."""

    def bind_teacher(self, teacher: nn.Module) -> None:  # noqa: B027  (a hook: does nothing unless overridden)
        """Take the frozen model of ``teacher_dir``, before the first batch."""

    def start_fit(self, epochs: int) -> None:  # noqa: B027  (a hook: does nothing unless overridden)
        """Told, before the first epoch this process trains (a resumed run's too), the fit's last
        epoch (``trainer.epochs``): a term that measures only some epochs measures that one as
        well, so the weights a run ends with can always be selected."""

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """Runs once per epoch, after validation and before the scheduler step, with the
        validation split; returns values for that epoch's metrics.jsonl line.

        A term uses it to adapt itself between epochs (say, class weights from the
        validation error); name the values after the term (``"<name>/..."``). The model
        arrives in train mode and with gradients on: a term that only measures wraps itself
        in ``dq.inference.eval_mode`` or ``torch.no_grad()``.
        """
        return {}

    def stop_request(self) -> StopRequest | None:
        """Asked after ``end_epoch``: a term that finds training should end (the
        catastrophic-overfitting guard of fast adversarial training) returns a
        ``StopRequest``; the engine logs that epoch, then stops, and keeps an earlier
        epoch's weights when the request carries them."""
        return None

    def state_dict(self) -> dict[str, Any] | None:
        """What the term carries from epoch to epoch (FRL-Reweight's multipliers), for
        last.pt, so a resumed run continues with it; plain tensors and numbers only.
        None (the default): the term keeps no state."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027  (a hook: does nothing unless overridden)
        """Take back what ``state_dict`` gave (a resumed run, or rank 0's state on the others)."""


class ModelTransform(Protocol):
    """A regularizer that changes the model rather than the loss (LoRA: adapters on a
    frozen base; its cost is the trainable parameter count, reported, not a loss term).

    The runner and ``dq.load_run`` make the same calls: ``apply`` on the freshly built
    model (``restoring=True`` when a finished run's own checkpoint will be loaded next,
    so nothing is fetched from elsewhere), then ``finish`` on the trained model.
    """

    name: str

    def apply(self, model: nn.Module, *, restoring: bool = False) -> list[str]:
        """Change ``model`` in place; return console lines saying what was done."""
        ...

    def finish(self, model: nn.Module) -> nn.Module:
        """The model to evaluate once its weights are final (LoRA: merged when asked)."""
        ...


@dataclass(frozen=True)
class StopRequest:
    """A term's request that training end after the current epoch.

    ``reason``: one console line. ``rollback_epoch`` and ``rollback_state``: an earlier epoch
    and its weights (CPU state dict); the engine evaluates those instead of its own selection
    when that came later. ``metrics``: flat keys for metrics.json (``train/...``).
    """

    reason: str
    rollback_epoch: int | None = None
    rollback_state: dict[str, torch.Tensor] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    logits: torch.Tensor


class Objective:
    """Cross-entropy on the clean batch plus every active term, each logged on its own."""

    def __init__(self, terms: Sequence[Term] = ()) -> None:
        for term in terms:
            if not isinstance(term, Term):
                raise TypeError(f"{type(term).__name__} is not a dq.objectives.base.Term")
        active = [term for term in terms if term.weight != 0]
        self.terms = _needed_first(active)
        self.task_weight = 1.0 - sum(float(term.task_share) for term in self.terms)
        # the clean logits need a graph unless nothing differentiates them (Term.reads_logits)
        self.clean_graph = self.task_weight != 0 or any(term.reads_logits for term in self.terms)

    def __call__(self, model: nn.Module, batch: Batch) -> ObjectiveOutput:
        with contextlib.nullcontext() if self.clean_graph else torch.no_grad():
            logits = model(batch.x)
        task = F.cross_entropy(logits.float(), batch.y)
        values = {"task": task.detach()}
        total = self.task_weight * task if self.task_weight != 0 else torch.zeros((), device=task.device)
        for term in self.terms:
            value = term(model, batch, logits)
            values[term.name] = value.detach()
            total = total + term.weight * value
        return ObjectiveOutput(loss=total, terms=values, logits=logits)

    def val_metrics(self) -> list[str]:
        """The ``val/...`` metrics the terms' ``end_epoch`` hooks add (``Term.val_metrics``):
        early stopping and epoch selection may monitor them."""
        return [name for term in self.terms for name in term.val_metrics]

    def start_fit(self, epochs: int) -> None:
        """Call each term's ``start_fit`` hook with the fit's last epoch."""
        for term in self.terms:
            term.start_fit(epochs)

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """Call each term's ``end_epoch`` hook; return all their values to log."""
        values: dict[str, float] = {}
        for term in self.terms:
            values.update({key: float(value) for key, value in term.end_epoch(model, val, device).items()})
        return values

    def stop_request(self) -> StopRequest | None:
        """The first term's request to stop training (after ``end_epoch``), or None."""
        for term in self.terms:
            request = term.stop_request()
            if request is not None:
                return request
        return None

    def state_dict(self) -> dict[str, dict]:
        """The state of each term that keeps one between epochs, by term name."""
        states = {term.name: term.state_dict() for term in self.terms}
        return {name: state for name, state in states.items() if state is not None}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Give each stateful term its part of ``state`` (from ``state_dict``).

        Raises:
            ValueError: ``state`` names a term this objective has not, or misses one it has.
        """
        stateful = {term.name: term for term in self.terms if term.state_dict() is not None}
        if set(state) != set(stateful):
            raise ValueError(
                f"objective state for terms {sorted(state)}, but the stateful terms are {sorted(stateful)}"
            )
        for name, term in stateful.items():
            term.load_state_dict(state[name])

    @property
    def term_names(self) -> list[str]:
        return ["task", *(term.name for term in self.terms)]


def _needed_first(terms: list[Term]) -> list[Term]:
    """``terms`` with each term's ``needs`` checked, bound and placed before it.

    Raises:
        DQUserError: a term needs one that is not active (absent, or weight 0).
    """
    by_name = {term.name: term for term in terms}
    ordered = [term for term in terms if not term.needs]
    for term in terms:
        needs = tuple(term.needs)
        if not needs:
            continue
        missing = [name for name in needs if name not in by_name]
        if missing:
            wanted = ",".join([*missing, term.name])
            raise DQUserError(
                f"regularizer {term.name} needs regularizer {' and '.join(missing)} in the same run with a nonzero "
                f"weight, e.g. regularizer=[{wanted}]"
            )
        term.bind({name: by_name[name] for name in needs})
        ordered.append(term)
    return ordered


def require_groups(term: str, meta: DatasetMeta) -> None:
    """Refuse, in one line, a term that compares groups on data that has none: the terms
    that read ``batch.group`` (fairness, group_dro) build through this."""
    if not meta.has_groups:
        raise DQUserError(
            f"regularizer {term} needs data with groups; dataset {meta.name} has none "
            "(tabular and text data have sensitive groups; images take dataset.group=label)"
        )
