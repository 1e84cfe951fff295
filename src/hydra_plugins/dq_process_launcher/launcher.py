"""``hydra/launcher: dq_processes``: the config schema, stored in Hydra's ConfigStore, and
the Launcher class Hydra instantiates from it. Light on purpose (Hydra imports this module at
every start): the worker processes are started and watched by ``dq.sweep.processes``."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class DQProcessLauncherConf:
    """Keys of ``hydra.launcher`` (docs/guides/sweeps.md)."""

    _target_: str = "hydra_plugins.dq_process_launcher.launcher.DQProcessLauncher"
    # Jobs running at once, each worker process running one: -1 one per CPU core, -2 all cores but one.
    n_jobs: int = -1


ConfigStore.instance().store(group="hydra/launcher", name="dq_processes", node=DQProcessLauncherConf, provider="dq")


class DQProcessLauncher(Launcher):
    """Runs a batch's jobs in ``n_jobs`` worker processes, one job after another in each: a
    worker that dies (SIGKILL, the out-of-memory killer) fails its own job only."""

    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = n_jobs
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context
        from dq.sweep.processes import start_early

        start_early(config, self.n_jobs)  # the workers import while the sweeper composes the jobs' configs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from dq.sweep.processes import launch

        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        context: Any = self.hydra_context
        return launch(context, self.config, self.task_function, job_overrides, initial_job_idx, self.n_jobs)
