"""Reading finished runs back: config, model with its best weights, data splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dq import data, models
from dq.engine.checkpoint import load_best_into
from dq.errors import DQUserError
from dq.objectives.registry import build_transforms
from dq.outputs import HYDRA_DIR, METRICS_JSON, RUN_JSON, read_json
from dq.records import Splits
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
    """
    run_dir = Path(path)
    config_path = run_dir / HYDRA_DIR / "config.yaml"
    if not config_path.is_file():
        raise DQUserError(f"{run_dir} is not a dq run directory (no {HYDRA_DIR}/config.yaml)")
    info = read_json(run_dir / RUN_JSON) if (run_dir / RUN_JSON).is_file() else {}
    if info.get("status") != "completed":
        raise DQUserError(f"run {run_dir} has status {info.get('status', 'unknown')!r}; only completed runs load")
    cfg = OmegaConf.load(config_path)
    spec = to_spec(cfg)
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
    metrics = read_json(run_dir / METRICS_JSON) if (run_dir / METRICS_JSON).is_file() else {}
    return LoadedRun(run_dir=run_dir, cfg=cfg, spec=spec, model=model, splits=splits, metrics=metrics, info=info)
