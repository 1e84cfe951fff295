"""``hydra/sweeper: dq_optuna``: the config schema, stored in Hydra's ConfigStore, and the
Sweeper class Hydra instantiates from it. Light on purpose (Hydra imports this module at
every start): the work, and the Optuna import, happen in ``dq.sweep.optuna_search``."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class DQOptunaSweeperConf:
    """Keys of ``hydra.sweeper`` (docs/guides/sweeps.md, "Search")."""

    _target_: str = "hydra_plugins.dq_optuna_sweeper.sweeper.DQOptunaSweeper"
    # The sweeper builds the sampler itself, so that a bad one is reported in one line.
    _recursive_: bool = False
    # metric key of metrics.json → maximize | minimize (null drops a preset's entry); one entry
    # is a single-objective study. Unset: {test/accuracy: maximize}. (Untyped, like sampler and
    # params: OmegaConf cannot merge a command-line dict into a typed node that holds None.)
    objectives: Any = None
    # An optuna.samplers class as a Hydra _target_ node, e.g. {_target_: optuna.samplers.NSGAIISampler,
    # seed: 0}. Unset: TPESampler seeded with the config's seed.
    sampler: Any = None
    # Trials the study should hold when the sweep ends; a restarted study runs only those it lacks.
    n_trials: int = 20
    # Trials asked for at once and handed to hydra/launcher as one batch.
    n_jobs: int = 1
    # Optuna storage: an SQLAlchemy URL (sqlite:///..., postgresql://...), journal:<file>,
    # or null (in memory: nothing to restart from).
    storage: Optional[str] = "sqlite:///${hydra.sweep.dir}/optuna.db"
    study_name: str = "${experiment_name}"
    # Search space in Hydra's override grammar: key → interval(0,2), tag(log, interval(1e-4,1e-1)),
    # tag(int, interval(1,8)), range(1,5), choice(32,64); a plain value is passed to every trial.
    params: Any = None


ConfigStore.instance().store(group="hydra/sweeper", name="dq_optuna", node=DQOptunaSweeperConf, provider="dq")


class DQOptunaSweeper(Sweeper):
    """Asks Optuna for trials, has ``hydra/launcher`` run each as one Hydra job, tells
    Optuna each job's metrics (or its failure), and writes ``pareto.csv`` at the end."""

    def __init__(
        self,
        objectives: DictConfig | None = None,
        sampler: DictConfig | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        storage: str | None = None,
        study_name: str = "dq",
        params: DictConfig | None = None,
    ) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {
            "objectives": _plain(objectives),
            "sampler": _plain(sampler),
            "n_trials": n_trials,
            "n_jobs": n_jobs,
            "storage": storage,
            "study_name": study_name,
            "params": _plain(params),
        }
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from dq.sweep.optuna_search import SearchSettings, run_search

        assert self.config is not None and self.launcher is not None
        run_search(
            SearchSettings.from_mapping(self.settings),
            arguments,
            launcher=self.launcher,
            config=self.config,
            check_batch=self._check_batch,
        )

    def _check_batch(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of a batch here first, as Hydra's basic sweeper does: a search
        space that does not compose fails in one line, before a job starts."""
        self.validate_batch_is_legal(batch)


def _plain(node: Any) -> Any:
    """A resolved plain-Python copy of a config node (``None`` stays ``None``)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node
