"""The compression step shared by ``dq-compress RUN_DIR`` and ``dq-train ... compress=...``:
compress a copy of a trained model, compare it with the original, and write a new run
directory inside the original's::

    <run>/compressed/<method>-<kind|scheme>[-<amount>]_<stamp>/
      run.json              status running → completed (only at the very end)
      .hydra/config.yaml    the original config with the compress node
      checkpoints/best.pt   the compressed weights (weights_only=True; a structured-pruned
                            model's tensor shapes in "shapes", see dq.compress.prune.reshape_like)
      metrics.json          the original's keys, compress/... and compress/delta/... keys
      compression.json      the link back (run directory, git commit), method, settings,
                            pruned_share and pruned_weights (pruning), parameters, nonzeros
                            and size before/after, notes

Nothing the original run wrote is altered here. On any failure the new directory is removed.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dq import metric_keys as keys
from dq.compress.compare import compare
from dq.compress.footprint import nonzeros, size_bytes
from dq.compress.prune import check_prunable, prune_model, shapes
from dq.config.compress import PruneConfig, QuantizeConfig
from dq.data_records import DatasetMeta, Splits
from dq.models import count_parameters
from dq.rundir import checksums
from dq.rundir.layout import (
    BEST_CHECKPOINT,
    CHECKPOINTS,
    COMPRESSED,
    COMPRESSION_JSON,
    HYDRA_DIR,
    METRICS_JSON,
    RUN_JSON,
    unique_stamp,
)
from dq.rundir.read import read_json
from dq.rundir.record import RunRecord
from dq.rundir.write import save_torch, write_json, write_text


@dataclass
class Source:
    """The trained run to compress: its directory, config (with the compress node), spec,
    model (left untouched), splits and final metrics."""

    run_dir: Path
    cfg: DictConfig
    spec: Any
    model: nn.Module
    splits: Splits
    metrics: dict[str, Any]


def check_compressible(compress: Any, model_name: str, meta: DatasetMeta, model: nn.Module) -> None:
    """Refuse, before any work, what the chosen method cannot compress (DQUserError)."""
    if isinstance(compress, PruneConfig):
        check_prunable(compress, model_name, meta)
    elif isinstance(compress, QuantizeConfig):
        from dq.compress.quantize import check_quantizable  # torchao loads only when quantising

        check_quantizable(model, compress, meta)


def directory_name(compress: Any) -> str:
    """``prune-global_magnitude-0.8_<stamp>``, ``quantize-int8_dynamic_<stamp>``."""
    if isinstance(compress, PruneConfig):
        label = f"prune-{compress.kind}-{compress.amount:g}"
    else:
        label = f"quantize-{compress.scheme}"
    return f"{label}_{unique_stamp()}"


def compress_run(
    source: Source, device: torch.device, say: Callable[[str], None] = lambda line: None
) -> tuple[Path, dict[str, float]]:
    """Compress ``source``'s model as ``source.spec.compress`` says; write the compressed run
    directory; return it and the ``compress/...`` keys."""
    settings = source.spec.compress
    target = source.run_dir / COMPRESSED / directory_name(settings)
    target.mkdir(parents=True)
    try:
        return target, _compress_into(source, settings, target, device, say)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        with suppress(OSError):  # compressed/ too, when this was its only entry
            target.parent.rmdir()
        raise


def _compress_into(
    source: Source, settings: Any, target: Path, device: torch.device, say: Callable[[str], None]
) -> dict[str, float]:
    started = time.perf_counter()
    record = RunRecord(target, source.spec.seed)
    record.start(device)
    write_text(target / HYDRA_DIR / "config.yaml", OmegaConf.to_yaml(source.cfg))
    original = source.model.eval()
    work = copy.deepcopy(original)
    params_before, nonzeros_before, size_before = (
        count_parameters(original)[0],
        nonzeros(original),
        size_bytes(original),
    )
    best = target / CHECKPOINTS / BEST_CHECKPOINT
    facts: dict[str, Any] = {}
    gradient_model: nn.Module | None = None
    if isinstance(settings, PruneConfig):
        say(f"pruning: {settings.kind}, amount {settings.amount:g}")
        pruned = prune_model(work, settings, source.splits, source.spec, device)
        compressed, note = pruned.model, pruned.note
        facts = {"pruned_share": pruned.sparsity, "pruned_weights": pruned.pruned_weights}
        save_torch(best, {"model": compressed.state_dict(), "shapes": shapes(compressed), "compress": "prune"})
    else:
        say(f"quantising: {settings.scheme}")
        from dq.compress.quantize import quantize_model, save_quantized

        quantized = quantize_model(work, settings, source.splits, device)
        compressed, gradient_model, note = quantized.model, quantized.gradient_model, quantized.note
        best.parent.mkdir(parents=True, exist_ok=True)
        save_quantized(quantized, best)
    say("comparing the compressed model with the original")
    measured = compare(
        original,
        compressed,
        source.splits,
        source.spec,
        device,
        gradient_model=gradient_model,
        original_metrics=source.metrics,
    )
    if "pruned_share" in facts:  # compress/sparsity stays compare's: 1 − nonzeros / parameters, over all
        measured[keys.compress("pruned_share")] = facts["pruned_share"]
    write_json(target / METRICS_JSON, {**source.metrics, **measured})
    original_info = _original_run_json(source.run_dir)
    write_json(
        target / COMPRESSION_JSON,
        {
            "original_run": str(source.run_dir.resolve()),
            "original_git": original_info.get("git"),
            "method": settings.method,
            "settings": dataclasses.asdict(settings),  # the enums are StrEnums: written as their names
            **facts,
            "params_before": params_before,
            "params_after": count_parameters(compressed)[0],
            "nonzeros_before": nonzeros_before,
            "nonzeros_after": nonzeros(compressed) if isinstance(settings, PruneConfig) else None,
            "size_before_bytes": size_before,
            "size_after_bytes": best.stat().st_size,
            "note": note,
            "wall_s": time.perf_counter() - started,
        },
    )
    checksums.record(target, (METRICS_JSON, f"{HYDRA_DIR}/config.yaml", f"{CHECKPOINTS}/{BEST_CHECKPOINT}"))
    record.finish()
    return measured


def _original_run_json(run_dir: Path) -> dict[str, Any]:
    """The original's run.json (its git commit), or nothing when it cannot be read."""
    try:
        return read_json(run_dir / RUN_JSON)
    except (OSError, ValueError):
        return {}
