"""``RunLoggers``: the selected loggers of one run behind one object, so the runner makes
one call per event whatever ``logger=[...]`` holds.

Epoch records are logged at their ``epoch``; the final metrics at the last epoch seen, so
a final value sits at the end of each curve. ``close`` also logs run.json, which by then
holds the run's final status.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dq.loggers.base import Logger, LoggerContext
from dq.loggers.registry import LOGGERS
from dq.rundir.layout import RUN_JSON
from dq.rundir.read import read_json


class RunLoggers:
    """Fans every event out to ``loggers`` (in selection order)."""

    def __init__(self, loggers: list[Logger], run_dir: Path) -> None:
        self.loggers = loggers
        self.run_dir = Path(run_dir)
        self.last_step = 0

    def start(self, params: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.start(params)

    def log_epoch(self, record: Mapping[str, float]) -> None:
        """One metrics.jsonl record, at its epoch (``fit``'s callback dq.engine.callbacks.LogEpochs)."""
        self.last_step = int(record["epoch"])
        for logger in self.loggers:
            logger.log_metrics(record, self.last_step)

    def log_final(self, metrics: Mapping[str, float]) -> None:
        """Final (metrics.json) values, at the last epoch logged."""
        for logger in self.loggers:
            logger.log_metrics(metrics, self.last_step)

    def log_artifacts(self, paths: Iterable[Path], folder: str | None = None) -> None:
        for path in paths:
            for logger in self.loggers:
                logger.log_artifact(Path(path), folder)

    def close(self, error: BaseException | None = None) -> None:
        """Log run.json and close every logger with run.json's final status (``completed``,
        ``failed``, or whatever else it records; by ``error`` if it says neither).

        After a failure, a logger that cannot close is reported on stderr and the run's
        own error is the one raised; after success, the first such error is raised once
        every logger has been closed.
        """
        run_json = self.run_dir / RUN_JSON
        status = read_json(run_json).get("status") if run_json.is_file() else None
        if status in (None, "running"):
            status = "completed" if error is None else "failed"
        first: BaseException | None = None
        for logger in self.loggers:
            try:
                if run_json.is_file():
                    logger.log_artifact(run_json)
                logger.close(status)
            except Exception as close_error:
                if error is not None:
                    print(f"dq: a logger could not close: {close_error}", file=sys.stderr)
                first = first or close_error
        if first is not None and error is None:
            raise first


def build_loggers(selected: Mapping[str, Any], context: LoggerContext) -> RunLoggers:
    """The loggers that ``selected`` (``spec.logger``: name → validated config) names.

    Raises:
        DQUserError: an unknown logger, a missing package or a store that cannot be opened,
            before anything is trained.
    """
    loggers = []
    for name, cfg in selected.items():
        logger = LOGGERS.get(name).value(cfg, context)
        if logger is not None:
            loggers.append(logger)
    return RunLoggers(loggers, context.run_dir)
