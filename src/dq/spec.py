"""Where every schema meets: Hydra's ConfigStore, and a composed config turned into a
validated ``RunSpec``.

The run-wide groups have their schemas in ``dq.config``; each plugin (dataset, model,
regularizer) registers its own schema beside its code. ``register_schemas`` stores them
all once, as ``schema/<group>/<name>``, so every ``conf/<group>/<name>.yaml`` starts from
its own schema (``/schema/<group>/<name>@_here_``) and Hydra refuses an unknown key or a
wrong type while it composes. ``to_spec`` checks a composed (or saved) config again,
node by node, and runs each schema's range checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dq.config import config_dir
from dq.config.compress import COMPRESS_SCHEMAS
from dq.config.eval import EvalConfig
from dq.config.explain import ExplainConfig
from dq.config.optimizer import OPTIMIZER_SCHEMAS
from dq.config.overrides import check_overrides
from dq.config.report import ReportConfig
from dq.config.run import RunConfig, check_run_fields
from dq.config.scheduler import SchedulerConfig
from dq.config.trainer import TrainerConfig
from dq.config.validation import interpolation_hint, omegaconf_message, typed, unknown_key_message
from dq.data.registry import DATASETS
from dq.errors import DQUserError
from dq.loggers.registry import LOGGERS
from dq.models.registry import MODELS, text_tokenizer
from dq.objectives.registry import REGULARIZERS
from dq.registry import Registry
from dq.rundir.layout import unique_stamp


@dataclass
class RunSpec:
    """A validated run: the same tree as the config, as typed objects (each group's
    node is an instance of its choice's schema)."""

    dataset: Any
    model: Any
    optimizer: Any
    scheduler: SchedulerConfig
    trainer: TrainerConfig
    regularizer: dict[str, Any]
    eval: EvalConfig
    explain: ExplainConfig
    report: ReportConfig
    logger: dict[str, Any]
    seed: int
    experiment_name: str
    compress: Any = None  # a PruneConfig or QuantizeConfig (``compress=<choice>``), else None


# Groups with one schema per choice: where their choices' schemas are registered.
PLUGIN_GROUPS: dict[str, Registry[Any]] = {
    "dataset": DATASETS,
    "model": MODELS,
    "regularizer": REGULARIZERS,
    "logger": LOGGERS,
}
# Groups that select several choices at once (``regularizer=[a,b]``): name -> node.
SELECTION_GROUPS = ("regularizer", "logger")
SINGLE_SCHEMAS: dict[str, type] = {
    "scheduler": SchedulerConfig,
    "trainer": TrainerConfig,
    "eval": EvalConfig,
    "explain": ExplainConfig,
    "report": ReportConfig,
}

_registered = False


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore, once per process (a second call does
    nothing: Hydra 1.4 warns on, and 1.5 refuses, storing a name twice)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    # conf/config.yaml names run and sweep directories with it; cached like Hydra's ${now:},
    # so a sweep's jobs (in this process or a launcher's) see the one value.
    OmegaConf.register_new_resolver("dq_stamp", unique_stamp, use_cache=True, replace=True)
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for group, schema in SINGLE_SCHEMAS.items():
        store.store(group=f"schema/{group}", name=group, node=schema)
    for name, schema in OPTIMIZER_SCHEMAS.items():
        store.store(group="schema/optimizer", name=name, node=schema)
    for name, schema in COMPRESS_SCHEMAS.items():
        store.store(group="schema/compress", name=name, node=schema)
    for group, registry in PLUGIN_GROUPS.items():
        for entry in registry:
            if entry.schema is not None:
                store.store(group=f"schema/{group}", name=entry.name, node=entry.schema)
    _registered = True


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The run config that ``conf/`` and ``overrides`` give, composed in-process with
    Hydra's compose API (what ``dq-train <overrides>`` would run), e.g.
    ``dq.compose(["dataset=adult", "model=mlp"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    check_overrides(overrides)  # what dq-train checks before Hydra composes
    register_schemas()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))


def _choice_schema(group: str, node: DictConfig) -> type:
    name = node.get("name")
    if group == "optimizer":
        if name not in OPTIMIZER_SCHEMAS:
            raise DQUserError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZER_SCHEMAS)}")
        return OPTIMIZER_SCHEMAS[name]
    return _plugin_schema(group, str(name))


def to_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed (or saved) config and return it as typed objects.

    Each group is merged onto its schema again, so a config read back from a run's
    ``.hydra/config.yaml`` is checked exactly like one Hydra just composed.

    Raises:
        DQUserError: with one line naming the bad key (its full config path), its value
            and what is allowed.
    """
    parts: dict[str, Any] = {}
    known = [item.name for item in dataclasses.fields(RunConfig)]
    unknown = [str(key) for key in cfg if key not in known and key != "hydra"]
    if unknown:  # `+name=...` adds a top-level key that no schema reads
        raise DQUserError(unknown_key_message(unknown[0], known))
    for group in ("dataset", "model", "optimizer", "scheduler", "trainer"):
        if group not in cfg:
            raise DQUserError(f"the config has no {group!r} group")
    for group in ("dataset", "model", "optimizer"):
        parts[group] = typed(group, _choice_schema(group, cfg[group]), cfg[group])
    for group, schema in SINGLE_SCHEMAS.items():
        parts[group] = typed(group, schema, cfg.get(group) or {})
    for group in SELECTION_GROUPS:
        parts[group] = {
            str(name): typed(f"{group}.{name}", _plugin_schema(group, str(name)), node)
            for name, node in (cfg.get(group) or {}).items()
        }
    parts["dataset"] = _model_tokenizer(parts["model"], parts["dataset"])
    seed, experiment_name = _run_field(cfg, "seed", 0), _run_field(cfg, "experiment_name", "default")
    check_run_fields(seed, experiment_name)
    compress = cfg.get("compress")
    return RunSpec(
        seed=seed,
        experiment_name=experiment_name,
        compress=None if compress is None else compress_spec(compress),
        **parts,
    )


def _model_tokenizer(model: Any, dataset: Any) -> Any:
    """``dataset`` read with the model's own tokenizer where it has one (a pretrained text
    encoder: ``Capabilities.tokenizer``): the one place that choice is made."""
    path = text_tokenizer(model)
    return dataset if path is None else dataset.read_with(path, str(model.name))


def compress_spec(node: Any) -> Any:
    """The ``compress`` node as its method's schema (``method``: prune or quantize), validated.

    Raises:
        DQUserError: an unknown method, an unknown key, or a value out of range (amount
            outside (0, 1)).
    """
    method = node.get("method") if isinstance(node, DictConfig | dict) else None
    if method not in COMPRESS_SCHEMAS:
        raise DQUserError(f"unknown compress method {method!r}; allowed: {', '.join(COMPRESS_SCHEMAS)}")
    return typed("compress", COMPRESS_SCHEMAS[method], node)


def _run_field(cfg: DictConfig, key: str, default: Any) -> Any:
    """A top-level value of the run (``seed``, ``experiment_name``), resolved."""
    try:
        return cfg.get(key, default)
    except OmegaConfBaseException as error:
        raise DQUserError(f"bad value for {key}: {omegaconf_message(error)}{interpolation_hint(error)}") from error


def _plugin_schema(group: str, name: str) -> type:
    """The schema registered for ``name`` in ``group`` (DQUserError for an unknown name)."""
    schema = PLUGIN_GROUPS[group].get(name).schema
    assert schema is not None
    return schema
