"""``logger=[jsonl]``: metrics.jsonl, one line per epoch in the run directory.

The training loop writes that file for every run, selected or not (it is part of the run
directory's contract); this entry exists so the name can be selected and listed beside
the others, and adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from dq.loggers.base import LoggerContext
from dq.loggers.registry import register_logger


@dataclass
class JsonlLoggerConfig:
    """``logger.jsonl``: no options (metrics.jsonl is always written)."""

    def validate(self) -> None:
        pass


@register_logger("jsonl", schema=JsonlLoggerConfig)
def build_jsonl(cfg: JsonlLoggerConfig, context: LoggerContext) -> None:
    return None
