"""``logger=[mlflow]``: one MLflow run per dq run, through mlflow-skinny's client.

The default store is an SQLite database, ``sqlite:///outputs/mlflow.db`` (relative to the
working directory; MLflow's file store is in maintenance mode); any tracking URI works
(``logger.mlflow.tracking_uri``, e.g. ``http://host:5000``). The store is opened before
training, so a URI that cannot be opened stops the run with one line; a new SQLite
database is opened by one process at a time (``first_opener``), for parallel sweep jobs.

What lands where: the flattened config as params (a non-string value as JSON text), every
metrics.jsonl record at its epoch and the metrics.json values at the last epoch as
metrics, the explanation pictures (``explanations/``) and run.json as artifacts, and the
end as the run's status (FINISHED, FAILED, KILLED for ``interrupted``). MLflow allows only
letters, digits and ``_ - . / : space`` in names: any other character of a key becomes
``_`` (``test/robust_accuracy@0.1`` → ``test/robust_accuracy_0.1``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dq.config.validation import require
from dq.errors import DQUserError
from dq.loggers.base import LoggerContext, param_text
from dq.loggers.registry import INSTALL_HINT, register_logger

DEFAULT_TRACKING_URI = "sqlite:///outputs/mlflow.db"
ARTIFACTS_BESIDE_DB = "mlartifacts"
RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_NOT_IN_NAMES = re.compile(r"[^/\w.\- :]")


@dataclass
class MLflowLoggerConfig:
    """``logger.mlflow``: where runs are tracked and under which experiment and run name."""

    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment_name: Optional[str] = None  # noqa: UP045  null: the run's experiment_name
    run_name: Optional[str] = None  # noqa: UP045  null: <run dir's parent>/<run dir>
    artifact_location: Optional[str] = None  # noqa: UP045  null: beside an SQLite database, else the server's

    def validate(self) -> None:
        require(bool(self.tracking_uri.strip()), "tracking_uri", "must not be empty")


def mlflow_key(key: str) -> str:
    """``key`` with each character MLflow refuses in a metric or param name replaced by ``_``."""
    return _NOT_IN_NAMES.sub("_", key)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of an ``sqlite:///...`` URI (None for any other URI)."""
    prefix = "sqlite:///"
    return Path(tracking_uri.removeprefix(prefix)) if tracking_uri.startswith(prefix) else None


def default_artifact_location(tracking_uri: str) -> str | None:
    """``<database dir>/mlartifacts`` for an SQLite store (MLflow's own default is ./mlruns
    in whatever directory the run starts from); None lets a server choose."""
    database = sqlite_path(tracking_uri)
    return (database.resolve().parent / ARTIFACTS_BESIDE_DB).as_uri() if database is not None else None


@contextmanager
def first_opener(tracking_uri: str) -> Iterator[None]:
    """For an SQLite store, one process at a time (a lock file beside the database).

    MLflow creates a new database's tables on first open; the jobs of a parallel sweep
    (joblib) opening a new database at once each ran the migrations and broke it
    ("table ... already exists"). Later opens find the tables and take the lock briefly.
    """
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with (database.parent / f"{database.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class MLflowLogger:
    """One MLflow run in experiment ``experiment_name``, created at ``start``."""

    def __init__(self, client: Any, cfg: MLflowLoggerConfig, context: LoggerContext) -> None:
        self.client = client
        self.experiment_name = cfg.experiment_name or context.experiment_name
        self.run_name = cfg.run_name or f"{context.run_dir.parent.name}/{context.run_dir.name}"
        self.artifact_location = cfg.artifact_location or default_artifact_location(cfg.tracking_uri)
        self.run_dir = context.run_dir
        self.run_id: str | None = None

    def _experiment_id(self) -> str:
        """The experiment's id, creating it if needed (parallel sweep jobs may race to)."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.experiment_name, artifact_location=self.artifact_location)
        except MlflowException:
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def start(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(
            self._experiment_id(), run_name=self.run_name, tags={"dq.run_dir": str(self.run_dir.resolve())}
        )
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(mlflow_key(k), param_text(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def close(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=RUN_STATUS.get(status, "FAILED"))


@register_logger("mlflow", schema=MLflowLoggerConfig)
def build_mlflow(cfg: MLflowLoggerConfig, context: LoggerContext) -> MLflowLogger:
    """Import mlflow and open the tracking store now, before anything is trained."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise DQUserError(f"logger=[mlflow] needs mlflow-skinny, sqlalchemy and alembic: {INSTALL_HINT}") from error
    try:
        with first_opener(cfg.tracking_uri):
            client = MlflowClient(tracking_uri=cfg.tracking_uri)
            client.search_experiments(max_results=1)
    except ImportError as error:  # the SQL store's own packages
        raise DQUserError(
            f"logger.mlflow.tracking_uri={cfg.tracking_uri!r} needs {error.name}: {INSTALL_HINT}"
        ) from error
    except Exception as error:  # MLflow, SQLAlchemy and the OS each raise their own kind
        raise DQUserError(f"logger.mlflow.tracking_uri={cfg.tracking_uri!r} cannot be opened: {gist(error)}") from error
    return MLflowLogger(client, cfg, context)


def gist(error: BaseException) -> str:
    """The first sentence of ``error``'s message (MLflow's run on with lists and links)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(". ")[0].rstrip(".")
