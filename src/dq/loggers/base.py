"""What every logger receives, and the flat config it receives as params.

A logger is told, in this order: ``start`` with the flattened config (``optimizer.lr``
→ value), ``log_metrics`` for every epoch's metrics.jsonl record at its epoch and for the
final metrics.json values, ``log_artifact`` for files worth keeping beside the numbers
(explanation pictures, run.json), then ``close`` with the run's final status, on success
and on failure alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class LoggerContext:
    """What a logger's builder may know of its run besides its own config."""

    run_dir: Path
    experiment_name: str


class Logger(Protocol):
    def start(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...
    def close(self, status: str) -> None:
        """``status`` is run.json's: ``completed``, ``failed`` (or ``interrupted``)."""
        ...


def flatten_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as ``{"optimizer.lr": 0.001, ...}``; lists stay whole values,
    an empty group (``regularizer: {}``) stays as its own key, Hydra's node is left out."""
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk({key: value for key, value in tree.items() if key != "hydra"}, "")
    return flat


def param_text(value: Any) -> str:
    """A param as text: a string as it is, anything else as JSON (``null``, ``true``,
    ``[1, 2]``, ``{}``), so the text reads back to the same value."""
    return value if isinstance(value, str) else json.dumps(value)
