"""Schema of ``conf/config.yaml``: the whole run, one node per config group.

The group nodes that have one schema per choice (dataset, model, optimizer) or per
selected regularizer or logger are typed by the choice's own schema, which its YAML file starts
from (``/schema/<group>/<name>@_here_``); ``dq.spec`` stores them all in Hydra's
ConfigStore and checks a composed config against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from dq.config.eval import EvalConfig
from dq.config.explain import ExplainConfig
from dq.config.report import ReportConfig
from dq.config.scheduler import SchedulerConfig
from dq.config.trainer import TrainerConfig
from dq.errors import DQUserError

# The seed reaches NumPy's default_rng (the data split: no negative seed) and, in a search,
# Optuna's samplers (numpy.random.RandomState: below 2**32); torch takes more.
SEED_MAX = 2**32 - 1
# experiment_name is a folder of the outputs tree (outputs/<experiment_name>/<time>): one
# plain path component, never '..', a '/', a space or markup.
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]{0,99}")


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
    # compress=<choice> (conf/compress/): compress the trained model (dq.compress); null: none.
    compress: Any = None


def check_run_fields(seed: Any, experiment_name: Any) -> None:
    """The run-wide scalars that no group schema checks.

    Raises:
        DQUserError: a seed outside [0, 2**32 - 1], or an experiment name that is not one
            plain folder name.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        shown = seed if len(str(seed)) <= 60 else f"{str(seed)[:60]}..."
        raise DQUserError(f"seed must be an integer within [0, {SEED_MAX}], got {shown!r}")
    check_experiment_name(experiment_name)


def check_experiment_name(experiment_name: Any) -> None:
    """experiment_name is one folder name: Hydra makes ``outputs/<experiment_name>/`` before
    dq's task runs, so dq-train checks it on the command line too (a 300-character name
    would fail there with ``File name too long``)."""
    if not isinstance(experiment_name, str) or not EXPERIMENT_NAME.fullmatch(experiment_name):
        shown = experiment_name if len(str(experiment_name)) <= 60 else f"{str(experiment_name)[:60]}..."
        raise DQUserError(
            f"experiment_name must be a folder name of 1 to 100 letters, digits and _ . + = , - "
            f"(not starting with . or -), got {shown!r}"
        )
