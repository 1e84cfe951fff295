"""A finished run loaded back as live objects: ``load_run`` for analysis (a notebook,
dq-explain, dq-compress, dq-baselines) and ``load_teacher`` for a term that learns from
it (``regularizer.distill.teacher``).

Both rebuild the run the one same way: its saved config validated (``dq.spec``), its model
built from it, the model transforms applied as when best.pt was saved (LoRA: base +
adapters), best.pt's weights loaded (``dq.engine.checkpoint``), the transforms finished,
eval mode. This is the one part of ``dq.rundir`` above the engine in the import layers
(pyproject.toml): it builds data, models and transforms, which reading a run's files
never needs.

Teachers. A term sees a model and a batch, nothing else, and dq.objectives may not read
run directories. A term that learns from a finished run names its directory
(``Term.teacher_dir``) and takes the model in ``Term.bind_teacher``; whoever builds the objective
calls ``bind_teachers`` (``dq.runner.prepare_run`` does, before any training). Refused in
one line (``DQUserError``) before training: a directory that is not a completed run; a
teacher trained on other data (dataset name, input shape, classes; for tabular data the
columns, for text the vocabulary); and a teacher whose train/val/test split is not the
student's, since it may then have trained on the student's test examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dq import data, models
from dq.data_records import DatasetMeta, Splits
from dq.engine.checkpoint import load_best_into
from dq.errors import DQUserError
from dq.objectives.base import Objective
from dq.objectives.registry import build_transforms
from dq.rundir.layout import HYDRA_DIR, METRICS_JSONL, RUN_JSON
from dq.rundir.read import config_problem, read_config, read_metrics, read_run_json, require_listed
from dq.spec import RunSpec, to_spec


@dataclass
class LoadedRun:
    """A finished run, ready for analysis in a notebook or another tool."""

    run_dir: Path
    cfg: DictConfig
    spec: RunSpec
    model: nn.Module
    splits: Splits
    metrics: dict[str, Any]
    info: dict[str, Any]


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load the run in ``path``: its config, its model with checkpoints/best.pt loaded and
    in eval mode on ``device``, its dataset splits rebuilt from the same seed, its final
    metrics and its run.json.

    Raises:
        DQUserError: when ``path`` is not a run directory or the run did not complete.
        CorruptRunFile: one line naming the file, when a file it reads (run.json,
            .hydra/config.yaml, checkpoints/best.pt, metrics.json) is missing, broken or
            not what checksums.json recorded, or metrics.jsonl is missing.
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise DQUserError(f"{run_dir} is not a dq run directory (no such directory)")
    if not (run_dir / RUN_JSON).exists() and not (run_dir / HYDRA_DIR).exists():
        raise DQUserError(f"{run_dir} is not a dq run directory (no {RUN_JSON}, no {HYDRA_DIR}/config.yaml)")
    info = read_run_json(run_dir)
    if info["status"] != "completed":
        raise DQUserError(f"run {run_dir} has status {info['status']!r}; only completed runs load")
    cfg, spec = _saved_spec(run_dir)
    metrics = read_metrics(run_dir)
    require_listed(run_dir, METRICS_JSONL)  # a completed run's epoch log that was deleted
    splits = data.build(spec.dataset, spec.seed)
    model = _with_best_weights(models.build(spec.model, splits.meta), spec, splits.meta, run_dir, device)
    return LoadedRun(run_dir=run_dir, cfg=cfg, spec=spec, model=model, splits=splits, metrics=metrics, info=info)


def _saved_spec(run_dir: Path) -> tuple[DictConfig, RunSpec]:
    """The run's saved config and its validated spec.

    Raises:
        CorruptRunFile: .hydra/config.yaml is broken, or does not validate.
    """
    cfg = read_config(run_dir)
    try:
        spec = to_spec(cfg)
    except DQUserError as error:
        raise config_problem(run_dir, error) from None
    return cfg, spec


def _with_best_weights(
    model: nn.Module, spec: RunSpec, meta: DatasetMeta, run_dir: Path, device: str | torch.device
) -> nn.Module:
    """``model``, freshly built from the run's ``spec``, as the run left it: its transforms
    applied, best.pt's weights loaded on ``device``, the transforms finished, eval mode.

    Raises:
        CorruptRunFile: best.pt is missing, broken, or holds weights of another model.
    """
    transforms = build_transforms(spec.regularizer, meta)
    for transform in transforms:  # best.pt holds what the transforms made (LoRA: base + adapters)
        transform.apply(model, restoring=True)
    model.to(device)
    load_best_into(model, run_dir)
    for transform in transforms:
        model = transform.finish(model)
    model.eval()
    return model


def bind_teachers(objective: Objective, spec: RunSpec, meta: DatasetMeta, device: torch.device) -> list[str]:
    """Load the teacher of every term that names one and hand it over; console lines.

    The student's initialisation and batch order do not depend on it: the teacher is
    built under a forked torch RNG.

    Raises:
        DQUserError: one line naming the setting (``regularizer.<term>.teacher``).
    """
    notes = []
    for term in objective.terms:
        teacher_dir = term.teacher_dir
        if teacher_dir is None:
            continue
        shown = str(teacher_dir) if str(teacher_dir).isprintable() else repr(str(teacher_dir))  # one printable line
        shown = shown if len(shown) <= 200 else f"{shown[:200]}..."
        where = f"regularizer.{term.name}.teacher={shown}"
        teacher = load_teacher(Path(teacher_dir), spec, meta, device, where)
        term.bind_teacher(teacher)
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
        _, spec = _saved_spec(run_dir)
        with torch.random.fork_rng(devices=[]):
            teacher_meta = data.build(spec.dataset, spec.seed).meta
            _check_same_data(teacher_meta, meta, where)
            _check_same_split(spec, student, where)
            model = models.build(spec.model, teacher_meta)
        model = _with_best_weights(model, spec, teacher_meta, run_dir, device)
    except DQUserError as error:
        if str(error).startswith(where):
            raise
        raise DQUserError(f"{where}: {error}") from None
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
            f"({len(student.vocab)}); its token ids would mean other words (use the same dataset options; "
            "a pretrained teacher's tokenizer: dataset.tokenizer=<its tokenizer.json>)"
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
