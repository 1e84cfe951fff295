"""Experiment trackers a run reports to, selected with ``logger=[...]``: metrics.jsonl is
always written; TensorBoard and MLflow get the same params, epochs and final metrics.

Each logger is one module of this package registered with ``@register_logger`` (see
``registry``); the runner talks to all of them at once through ``RunLoggers``.
"""

from dq.loggers.base import Logger, LoggerContext, flatten_config, param_text
from dq.loggers.registry import LOGGERS, register_logger
from dq.loggers.session import RunLoggers, build_loggers

__all__ = [
    "LOGGERS",
    "Logger",
    "LoggerContext",
    "RunLoggers",
    "build_loggers",
    "flatten_config",
    "param_text",
    "register_logger",
]
