"""The training objective: task loss plus weighted regularizer terms.

    L = (1 − Σ task_share) · CE(clean) + Σ_k weight_k · term_k(model, batch, clean logits)

``task_share`` is 0 for ordinary penalties; a term that *replaces* part of the clean loss
(Madry's PGD training mixes clean and adversarial cross-entropy) declares its share.
The engine knows only ``Objective``: it calls it on a batch and gets the total loss, every
term's value for logging, and the clean logits. A term with weight 0 is dropped when the
objective is built, so it costs no forward or backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from dq.data_records import Batch, Split
from dq.errors import DQUserError


class Term(Protocol):
    """One regularizer: a name, a weight, and a scalar loss from (model, batch, clean logits).

    ``task_share`` (optional attribute, default 0) is the fraction of the clean
    cross-entropy this term replaces.

    ``end_epoch(model, val, device) -> dict[str, float]`` (optional method) runs once per
    epoch, after validation and before the scheduler step, with the validation split.
    A term uses it to adapt itself between epochs (say, class weights from the validation
    error); the values it returns go into that epoch's metrics.jsonl line, so name them
    after the term (``"<name>/..."``). The model arrives in train mode and with gradients
    on: a term that only measures wraps itself in ``dq.inference.eval_mode`` or
    ``torch.no_grad()``. Terms dropped for weight 0 are not called.

    ``stop_request() -> StopRequest | None`` (optional method), asked after ``end_epoch``:
    a term that finds training should end (the catastrophic-overfitting guard of fast
    adversarial training) returns a ``StopRequest``; the engine logs that epoch, then stops,
    and keeps an earlier epoch's weights when the request carries them.

    ``state_dict() -> dict`` and ``load_state_dict(state)`` (optional methods): a term that
    carries state from epoch to epoch (FRL-Reweight's multipliers) gives it here, so it
    goes into last.pt and a resumed run continues with it. Plain tensors and numbers only.

    ``needs`` (optional attribute, a tuple of term names) says which other terms must be
    active in the same objective; the ``Objective`` refuses the combination otherwise,
    runs the needed terms first on each batch, and hands them over once through the
    term's ``bind(terms: dict[str, Term])`` method. A term that builds on another one's
    work on the same batch (say, reweighting its per-example losses) reads it there
    instead of repeating it.

    ``teacher_dir`` (optional attribute, a run directory) and ``bind_teacher(model)``: a
    term that learns from a finished run's model (distillation) names the run; dq.objectives
    reads no run directory, so whoever builds the objective loads it (``dq.rundir.load``, called
    by ``dq.runner.prepare_run``) and hands the model over, frozen and in eval mode on the
    run's device, before the first batch.
    """

    name: str
    weight: float

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor: ...


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
        active = [term for term in terms if term.weight != 0]
        self.terms = _needed_first(active)
        self.task_weight = 1.0 - sum(float(getattr(term, "task_share", 0.0)) for term in self.terms)

    def __call__(self, model: nn.Module, batch: Batch) -> ObjectiveOutput:
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
        """The ``val/...`` metrics the terms' ``end_epoch`` hooks add (a term's optional
        ``val_metrics``): early stopping and epoch selection may monitor them."""
        return [name for term in self.terms for name in getattr(term, "val_metrics", ())]

    def end_epoch(self, model: nn.Module, val: Split, device: torch.device) -> dict[str, float]:
        """Call each term's optional ``end_epoch`` hook; return all their values to log."""
        values: dict[str, float] = {}
        for term in self.terms:
            hook = getattr(term, "end_epoch", None)
            if hook is not None:
                values.update({key: float(value) for key, value in hook(model, val, device).items()})
        return values

    def stop_request(self) -> StopRequest | None:
        """The first term's request to stop training (after ``end_epoch``), or None."""
        for term in self.terms:
            hook = getattr(term, "stop_request", None)
            request = hook() if hook is not None else None
            if request is not None:
                return request
        return None

    def state_dict(self) -> dict[str, dict]:
        """The state of each term that keeps one between epochs, by term name."""
        return {term.name: term.state_dict() for term in self.terms if hasattr(term, "state_dict")}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        """Give each stateful term its part of ``state`` (from ``state_dict``).

        Raises:
            ValueError: ``state`` names a term this objective has not, or misses one it has.
        """
        stateful = {term.name: term for term in self.terms if hasattr(term, "load_state_dict")}
        if set(state) != set(stateful):
            raise ValueError(
                f"objective state for terms {sorted(state)}, but the stateful terms are {sorted(stateful)}"
            )
        for name, term in stateful.items():
            term.load_state_dict(state[name])  # type: ignore[attr-defined]

    @property
    def term_names(self) -> list[str]:
        return ["task", *(term.name for term in self.terms)]


def _needed_first(terms: list[Term]) -> list[Term]:
    """``terms`` with each term's ``needs`` checked, bound and placed before it.

    Raises:
        DQUserError: a term needs one that is not active (absent, or weight 0).
    """
    by_name = {term.name: term for term in terms}
    ordered = [term for term in terms if not getattr(term, "needs", ())]
    for term in terms:
        needs = tuple(getattr(term, "needs", ()))
        if not needs:
            continue
        missing = [name for name in needs if name not in by_name]
        if missing:
            wanted = ",".join([*missing, term.name])
            raise DQUserError(
                f"regularizer {term.name} needs regularizer {' and '.join(missing)} in the same run with a nonzero "
                f"weight, e.g. regularizer=[{wanted}]"
            )
        term.bind({name: by_name[name] for name in needs})  # type: ignore[attr-defined]
        ordered.append(term)
    return ordered
