"""Finished runs as frozen teachers for the objective's terms (``regularizer.distill.teacher``).

A term sees a model and a batch, nothing else, and dq.objectives may not read run
directories (the import layers in pyproject.toml). A term that learns from a finished run
names its directory (``teacher_dir``) and has a ``bind_teacher(model)`` method; whoever
builds the objective calls ``bind_teachers`` (``dq.runner.prepare_run`` does, before any
training). This module sits between the runner and the engine, so it may read the run
(``dq.run_files``), validate its saved config (``dq.spec``), rebuild its model and
transforms and load its best.pt (``dq.engine.checkpoint``), as ``dq.runs.load_run`` does.

Refused in one line (``DQUserError``) before training: a directory that is not a completed
run; a teacher trained on other data (dataset name, input shape, classes; for tabular
data the columns, for text the vocabulary); and a teacher whose train/val/test split is not
the student's, since it may then have trained on the student's test examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dq import data, models
from dq.data_records import DatasetMeta
from dq.engine.checkpoint import load_best_into
from dq.errors import DQUserError
from dq.objectives.base import Objective
from dq.objectives.registry import build_transforms
from dq.outputs import HYDRA_DIR, RUN_JSON
from dq.run_files import config_problem, read_config, read_run_json
from dq.spec import RunSpec, to_spec


def bind_teachers(objective: Objective, spec: RunSpec, meta: DatasetMeta, device: torch.device) -> list[str]:
    """Load the teacher of every term that names one and hand it over; console lines.

    The student's initialisation and batch order do not depend on it: the teacher is
    built under a forked torch RNG.

    Raises:
        DQUserError: one line naming the setting (``regularizer.<term>.teacher``).
    """
    notes = []
    for term in objective.terms:
        teacher_dir = getattr(term, "teacher_dir", None)
        if teacher_dir is None:
            continue
        shown = str(teacher_dir) if str(teacher_dir).isprintable() else repr(str(teacher_dir))  # one printable line
        shown = shown if len(shown) <= 200 else f"{shown[:200]}..."
        where = f"regularizer.{term.name}.teacher={shown}"
        teacher = load_teacher(Path(teacher_dir), spec, meta, device, where)
        term.bind_teacher(teacher)  # type: ignore[attr-defined]
        total = sum(p.numel() for p in teacher.parameters())
        notes.append(f"teacher {teacher_dir}: {type(teacher).__name__}, {total:,} parameters, frozen")
    return notes


def load_teacher(run_dir: Path, student: RunSpec, meta: DatasetMeta, device: torch.device, where: str) -> nn.Module:
    """The completed run in ``run_dir`` as a frozen model (eval mode, no gradients) on
    ``device``, checked against the ``student`` run and its data's ``meta``.

    Raises:
        DQUserError: see the module docstring; the line starts with ``where``.
    """
    _check_completed(run_dir, where)
    try:
        cfg = read_config(run_dir)
        try:
            spec = to_spec(cfg)
        except DQUserError as error:
            raise config_problem(run_dir, error) from None
        with torch.random.fork_rng(devices=[]):
            teacher_meta = data.build(spec.dataset, spec.seed).meta
            _check_same_data(teacher_meta, meta, where)
            _check_same_split(spec, student, where)
            model = models.build(spec.model, teacher_meta)
        transforms = build_transforms(spec.regularizer, teacher_meta)
        for transform in transforms:  # best.pt holds what the transforms made (LoRA: base + adapters)
            transform.apply(model, restoring=True)
        model.to(device)
        load_best_into(model, run_dir)
    except DQUserError as error:
        if str(error).startswith(where):
            raise
        raise DQUserError(f"{where}: {error}") from None
    for transform in transforms:
        model = transform.finish(model)
    model.eval()
    model.requires_grad_(False)
    return model


def _check_completed(run_dir: Path, where: str) -> None:
    try:
        is_dir = run_dir.is_dir()
        is_run = (run_dir / RUN_JSON).exists() or (run_dir / HYDRA_DIR).exists()
    except (OSError, ValueError) as error:  # a name too long for the file system, a NUL byte
        problem = error.strerror if isinstance(error, OSError) and error.strerror else str(error)  # not the path again
        raise DQUserError(
            f"{where}: is not a dq run directory ({problem}); the teacher must be a completed run"
        ) from None
    if not is_dir:
        raise DQUserError(f"{where}: no such directory; the teacher must be a completed dq run directory")
    if not is_run:
        raise DQUserError(
            f"{where}: is not a dq run directory (no {RUN_JSON}, no {HYDRA_DIR}/config.yaml); "
            "the teacher must be a completed run"
        )
    try:
        status = read_run_json(run_dir)["status"]
    except DQUserError as error:
        raise DQUserError(f"{where}: {error}") from None
    if status != "completed":
        raise DQUserError(f"{where}: the run has status {status!r}; the teacher must be a completed run")


def _check_same_data(teacher: DatasetMeta, student: DatasetMeta, where: str) -> None:
    """The teacher's logits must mean the student's classes, for inputs that mean the same."""
    checks: list[tuple[str, Any, Any]] = [
        ("dataset", teacher.name, student.name),
        ("input shape", list(teacher.input_shape), list(student.input_shape)),
        ("number of classes", teacher.num_classes, student.num_classes),
        ("classes", list(teacher.class_names), list(student.class_names)),
        ("tabular columns", list(teacher.feature_names), list(student.feature_names)),
    ]
    for what, theirs, ours in checks:
        if theirs != ours:
            raise DQUserError(
                f"{where}: the teacher's {what} ({_short(theirs)}) differs from the student's ({_short(ours)}); "
                "a teacher must be trained on the student's data and classes"
            )
    if teacher.vocab != student.vocab:
        raise DQUserError(
            f"{where}: the teacher's vocabulary ({len(teacher.vocab)} tokens) differs from the student's "
            f"({len(student.vocab)}); its token ids would mean other words (use the same dataset options)"
        )


def _check_same_split(teacher: RunSpec, student: RunSpec, where: str) -> None:
    """Same split seed and fractions: the same train/val/test partition (``limit`` only
    takes a prefix of each split), so the teacher never trained on the student's test examples."""

    def split(spec: RunSpec) -> tuple[int, float, float]:
        seed = spec.dataset.split_seed if spec.dataset.split_seed is not None else spec.seed
        return seed, spec.dataset.val_fraction, spec.dataset.test_fraction

    theirs, ours = split(teacher), split(student)
    if theirs != ours:
        raise DQUserError(
            f"{where}: the teacher's train/val/test split (split seed {theirs[0]}, val_fraction {theirs[1]:g}, "
            f"test_fraction {theirs[2]:g}) is not the student's ({ours[0]}, {ours[1]:g}, {ours[2]:g}), so it may "
            f"have trained on the student's test examples; set dataset.split_seed={theirs[0]} "
            "(and the teacher's fractions) for the student"
        )


def _short(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
