"""Knowledge distillation (Hinton, Vinyals & Dean 2015, https://arxiv.org/abs/1503.02531)
as a regularizer term, so every other regularizer still applies beside it
(``regularizer=[distill,fairness]`` is fair distillation, ``[distill,adversarial]`` robust).

With student logits s, the teacher's logits t, temperature T and mixing weight α (``weight``)::

    L = (1 − α) · CE(s, y) + α · T² · KL(softmax(t / T) ‖ softmax(s / T))

The term's value (logged as ``train/distill``) is ``T² · KL(...)``, the batch mean of the
per-example KL; α is its weight and its ``task_share``, the share of the clean
cross-entropy it replaces (``dq.objectives.base``). T² keeps the soft targets' gradients
on the scale of the hard ones' as T grows (the paper's section 2).

The teacher is a finished run (``teacher``: its directory). A term sees a model and a
batch, never a run directory's files, so this module loads nothing: ``dq.rundir.load`` loads
the run (completed, same data and classes as the student) and hands the frozen model over
through ``bind_teacher`` before training. The teacher's logits are computed once per batch,
in eval mode, without a graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dq.config.validation import require
from dq.data_records import Batch, DatasetMeta
from dq.objectives.base import Term
from dq.objectives.registry import register_term


@dataclass
class DistillConfig:
    """``regularizer.distill`` (conf/regularizer/distill.yaml): ``weight`` α in [0, 1],
    ``temperature`` T > 0, ``teacher`` a completed run directory trained on the same data."""

    weight: float = 0.9
    temperature: float = 4.0
    teacher: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)

    def validate(self) -> None:
        require(
            0.0 <= self.weight <= 1.0,
            "weight",
            f"must be in [0, 1] (the share of the cross-entropy the teacher's soft targets replace), got {self.weight}",
        )
        require(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        require(
            self.weight == 0 or bool(self.teacher and self.teacher.strip()),
            "teacher",
            "must be a completed dq run directory to learn from (regularizer.distill.teacher=<run dir>), got none",
        )


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, mean over the batch (float32)."""
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


class Distillation(Term):
    """The soft-target term; see the module docstring for the loss.

    Example::

        term = Distillation(weight=0.9, temperature=4.0, teacher_dir="outputs/default/<time>")
        term.bind_teacher(teacher_model)        # done by dq.rundir.load.bind_teachers
        objective = Objective([term])           # (1 - 0.9)·CE + 0.9·T²·KL
    """

    name = "distill"

    def __init__(self, weight: float, temperature: float, teacher_dir: str) -> None:
        self.weight = weight
        self.task_share = weight
        self.temperature = temperature
        self.teacher_dir: str | None = teacher_dir
        self.teacher: nn.Module | None = None

    def bind_teacher(self, teacher: nn.Module) -> None:
        """Take the frozen teacher (eval mode, no gradients, on the run's device)."""
        self.teacher = teacher

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            raise RuntimeError("the distill term has no teacher: dq.rundir.load.bind_teachers binds it before training")
        with torch.no_grad():
            teacher_logits = self.teacher(batch.x)
        return distillation_loss(logits, teacher_logits, self.temperature)


@register_term("distill", schema=DistillConfig)
def build_distill(cfg: DistillConfig, meta: DatasetMeta) -> Distillation:
    assert cfg.teacher is not None  # DistillConfig.validate refuses a missing teacher when weight > 0
    return Distillation(cfg.weight, cfg.temperature, cfg.teacher)
