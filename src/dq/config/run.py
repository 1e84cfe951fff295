"""Schema of ``conf/config.yaml``: the whole run, one node per config group.

The group nodes that have one schema per choice (dataset, model, optimizer) or per
selected regularizer or logger are typed by the choice's own schema, which its YAML file starts
from (``/schema/<group>/<name>@_here_``); ``dq.spec`` stores them all in Hydra's
ConfigStore and checks a composed config against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from dq.config.eval import EvalConfig
from dq.config.explain import ExplainConfig
from dq.config.report import ReportConfig
from dq.config.scheduler import SchedulerConfig
from dq.config.trainer import TrainerConfig


@dataclass
class RunConfig:
    """The whole run. Group nodes are typed by their own schema (see ``dq.spec``)."""

    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    regularizer: dict[str, Any] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    logger: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    experiment_name: str = "default"
    resume: Optional[str] = None  # a run directory to continue (OmegaConf needs Optional)
