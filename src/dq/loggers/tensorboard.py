"""``logger=[tensorboard]``: TensorBoard event files, by default in ``<run_dir>/tensorboard/``,
so ``tensorboard --logdir outputs`` shows every run.

Every metrics.jsonl key is a scalar at its epoch, every metrics.json key a scalar at the
last epoch. The flattened config is one text entry, ``params``: JSON of ``{key: value}``
in a code block. Not ``add_hparams``: torch's writes its record into a second, timestamped
run beside this one, needs final metrics when the run starts, and refuses ``None`` and
list values (and gives numbers back as doubles); the text keeps every value exactly and
reads back with ``json.loads``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dq.config.validation import require
from dq.errors import DQUserError
from dq.loggers.base import LoggerContext
from dq.loggers.registry import INSTALL_HINT, register_logger

TENSORBOARD_DIR = "tensorboard"
PARAMS_TAG = "params"


@dataclass
class TensorBoardLoggerConfig:
    """``logger.tensorboard``: where the event files go (null: ``<run_dir>/tensorboard``)."""

    log_dir: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)

    def validate(self) -> None:
        empty = self.log_dir is not None and not self.log_dir.strip()
        require(not empty, "log_dir", "must not be empty (null: <run dir>/tensorboard)")


def params_markdown(params: Mapping[str, Any]) -> str:
    """The params as TensorBoard's text tab shows them: JSON in a code block."""
    return "```json\n" + json.dumps(dict(params), indent=2) + "\n```"


def read_params_markdown(text: str) -> dict[str, Any]:
    """The inverse of ``params_markdown``."""
    return json.loads(text.removeprefix("```json\n").removesuffix("\n```"))


class TensorBoardLogger:
    """One ``torch.utils.tensorboard.SummaryWriter``, opened at ``start``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def start(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.writer.add_text(PARAMS_TAG, params_markdown(params), global_step=0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, float(value), global_step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        pass  # files stay in the run directory beside the event files

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()


@register_logger("tensorboard", schema=TensorBoardLoggerConfig)
def build_tensorboard(cfg: TensorBoardLoggerConfig, context: LoggerContext) -> TensorBoardLogger:
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError as error:
        raise DQUserError(f"logger=[tensorboard] needs the tensorboard package: {INSTALL_HINT}") from error
    log_dir = Path(cfg.log_dir) if cfg.log_dir is not None else context.run_dir / TENSORBOARD_DIR
    return TensorBoardLogger(log_dir)
