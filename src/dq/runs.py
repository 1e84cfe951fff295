"""Reading finished runs back: config, model with its best weights, data splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dq import data, models
from dq.data_records import Splits
from dq.engine.checkpoint import load_best_into
from dq.errors import DQUserError
from dq.objectives.registry import build_transforms
from dq.outputs import HYDRA_DIR, METRICS_JSONL, RUN_JSON
from dq.run_files import config_problem, read_config, read_metrics, read_run_json, require_listed
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
    cfg = read_config(run_dir)
    try:
        spec = to_spec(cfg)
    except DQUserError as error:
        raise config_problem(run_dir, error) from None
    metrics = read_metrics(run_dir)
    require_listed(run_dir, METRICS_JSONL)  # a completed run's epoch log that was deleted
    splits = data.build(spec.dataset, spec.seed)
    model = models.build(spec.model, splits.meta)
    transforms = build_transforms(spec.regularizer, splits.meta)
    for transform in transforms:  # best.pt holds what the transforms made (LoRA: base + adapters)
        transform.apply(model, restoring=True)
    model.to(device)
    load_best_into(model, run_dir)
    for transform in transforms:
        model = transform.finish(model)
    model.eval()
    return LoadedRun(run_dir=run_dir, cfg=cfg, spec=spec, model=model, splits=splits, metrics=metrics, info=info)
