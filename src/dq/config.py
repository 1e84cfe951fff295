"""Typed schema of a run, registered in Hydra's ConfigStore.

Every YAML choice under ``conf/`` starts from one of these dataclasses (through its
defaults list), so Hydra rejects unknown keys and wrong types while it composes, and
``to_spec`` turns a composed config into typed objects whose ``__post_init__`` checks
ranges (a negative learning rate, zero epochs) before anything is trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dq.errors import DQUserError


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DQUserError(message)


# --------------------------------------------------------------------------- dataset
@dataclass
class DatasetConfig:
    """One dataset choice. Fields a dataset does not use are ignored by it.

    ``limit`` caps every split; ``split_seed`` (default: the run's seed) fixes the
    train/val/test split; ``sensitive`` names the sensitive attribute of tabular and
    text data and ``group: label`` gives image data class-wise groups.
    """

    name: str = MISSING
    limit: Optional[int] = None
    root: Optional[str] = None
    download: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: Optional[int] = None
    sensitive: Optional[str] = None
    sensitive_bins: Optional[list[float]] = None
    include_sensitive: bool = False
    group: Optional[str] = None
    max_length: int = 64
    min_freq: int = 2
    max_vocab: int = 20000

    def __post_init__(self) -> None:
        _require(
            self.limit is None or self.limit > 0, f"dataset.limit must be a positive integer or null, got {self.limit}"
        )
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            _require(0.0 < value < 0.5, f"dataset.{key} must be in (0, 0.5), got {value}")
        _require(self.max_length > 0, f"dataset.max_length must be > 0, got {self.max_length}")
        _require(self.min_freq >= 1, f"dataset.min_freq must be >= 1, got {self.min_freq}")
        _require(self.max_vocab >= 4, f"dataset.max_vocab must be >= 4, got {self.max_vocab}")
        _require(self.group in (None, "label"), f"dataset.group must be null or 'label', got {self.group!r}")


# --------------------------------------------------------------------------- model
class Activation(StrEnum):
    relu = "relu"
    gelu = "gelu"
    tanh = "tanh"


class RecurrentCell(StrEnum):
    lstm = "lstm"
    gru = "gru"


@dataclass
class MLPConfig:
    """Fully connected network on flattened float inputs (image, tabular, series); on text,
    fastText-style on the mean of the token embeddings (``embedding_dim``: text only)."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.1
    activation: Activation = Activation.relu
    embedding_dim: int = 64

    def __post_init__(self) -> None:
        _require(all(h > 0 for h in self.hidden), f"model.hidden sizes must be > 0, got {list(self.hidden)}")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        _require(self.embedding_dim > 0, f"model.embedding_dim must be > 0, got {self.embedding_dim}")


@dataclass
class CNNConfig:
    """Convolutional network: 2-d on images, 1-d on series; on text, Kim (2014) n-gram
    filters with max-over-time pooling (``embedding_dim``, ``filter_widths``, ``filters``:
    text only; ``channels``, ``kernel_size``, ``hidden``, ``batch_norm``: not on text)."""

    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    hidden: int = 128
    dropout: float = 0.25
    batch_norm: bool = True
    embedding_dim: int = 64
    filter_widths: list[int] = field(default_factory=lambda: [3, 4, 5])
    filters: int = 100

    def __post_init__(self) -> None:
        _require(
            len(self.channels) > 0 and all(c > 0 for c in self.channels),
            f"model.channels must be positive, got {list(self.channels)}",
        )
        _require(
            self.kernel_size > 0 and self.kernel_size % 2 == 1,
            f"model.kernel_size must be a positive odd integer, got {self.kernel_size}",
        )
        _require(self.hidden > 0, f"model.hidden must be > 0, got {self.hidden}")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        _require(self.embedding_dim > 0, f"model.embedding_dim must be > 0, got {self.embedding_dim}")
        _require(
            len(self.filter_widths) > 0 and all(w > 0 for w in self.filter_widths),
            f"model.filter_widths must be a non-empty list of positive widths, got {list(self.filter_widths)}",
        )
        _require(self.filters > 0, f"model.filters must be > 0, got {self.filters}")


@dataclass
class RNNConfig:
    """Recurrent network: tokens (text), time steps (series) or image rows."""

    name: str = "rnn"
    cell: RecurrentCell = RecurrentCell.lstm
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    embedding_dim: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _require(self.hidden_size > 0, f"model.hidden_size must be > 0, got {self.hidden_size}")
        _require(self.num_layers > 0, f"model.num_layers must be > 0, got {self.num_layers}")
        _require(self.embedding_dim > 0, f"model.embedding_dim must be > 0, got {self.embedding_dim}")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class AttentionConfig:
    """Transformer encoder over image patches, tokens, series patches or tabular features."""

    name: str = "attention"
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ff_dim: int = 128
    dropout: float = 0.1
    patch_size: int = 4
    series_patch: int = 10

    def __post_init__(self) -> None:
        _require(
            self.d_model > 0 and self.heads > 0,
            f"model.d_model and model.heads must be > 0, got {self.d_model}, {self.heads}",
        )
        _require(
            self.d_model % self.heads == 0,
            f"model.d_model ({self.d_model}) must be divisible by model.heads ({self.heads})",
        )
        _require(
            self.layers > 0 and self.ff_dim > 0,
            f"model.layers and model.ff_dim must be > 0, got {self.layers}, {self.ff_dim}",
        )
        _require(self.patch_size > 0 and self.series_patch > 0, "model.patch_size and model.series_patch must be > 0")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")


# --------------------------------------------------------------------------- optimizer
@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"optimizer.lr must be > 0, got {self.lr}")
        _require(0.0 <= self.momentum < 1.0, f"optimizer.momentum must be in [0, 1), got {self.momentum}")
        _require(self.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        _require(not self.nesterov or self.momentum > 0, "optimizer.nesterov needs optimizer.momentum > 0")


@dataclass
class AdamConfig:
    """Adam; ``decoupled: true`` gives AdamW (weight decay decoupled from the gradient)."""

    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    decoupled: bool = False

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"optimizer.lr must be > 0, got {self.lr}")
        _require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            f"optimizer.betas must be two numbers in [0, 1), got {list(self.betas)}",
        )
        _require(self.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")


class SchedulerName(StrEnum):
    none = "none"
    cosine = "cosine"
    step = "step"


@dataclass
class SchedulerConfig:
    """Learning-rate schedule, stepped once per epoch."""

    name: SchedulerName = SchedulerName.none
    step_size: int = 10
    gamma: float = 0.1
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        _require(self.step_size > 0, f"scheduler.step_size must be > 0, got {self.step_size}")
        _require(0.0 < self.gamma <= 1.0, f"scheduler.gamma must be in (0, 1], got {self.gamma}")
        _require(self.eta_min >= 0, f"scheduler.eta_min must be >= 0, got {self.eta_min}")


# --------------------------------------------------------------------------- trainer
class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class MonitorMode(StrEnum):
    max = "max"
    min = "min"


class AmpDtype(StrEnum):
    float16 = "float16"
    bfloat16 = "bfloat16"


class EpochSelection(StrEnum):
    best = "best"
    last = "last"


class LoaderKind(StrEnum):
    tensor = "tensor"
    dataloader = "dataloader"


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` (a val/ metric of metrics.jsonl) has not improved for
    ``patience`` epochs; the best epoch is kept as checkpoints/best.pt either way."""

    enabled: bool = True
    monitor: str = "val/accuracy"
    mode: MonitorMode = MonitorMode.max
    patience: int = 5
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        _require(
            self.monitor.startswith("val/"),
            f"trainer.early_stopping.monitor must be a val/ metric, got {self.monitor!r}",
        )
        _require(self.patience >= 1, f"trainer.early_stopping.patience must be >= 1, got {self.patience}")
        _require(self.min_delta >= 0, f"trainer.early_stopping.min_delta must be >= 0, got {self.min_delta}")


@dataclass
class TrainerConfig:
    """The loop. ``amp`` and pinned, non-blocking copies apply on CUDA only;
    ``loader: tensor`` keeps the splits on the device and batches by indexing.
    ``select`` decides which epoch's weights become best.pt and are tested: the best by
    ``early_stopping.monitor``, or the last one (for objectives whose aim is not the
    monitored clean metric, such as fairness or robustness)."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 512
    device: DeviceChoice = DeviceChoice.auto
    amp: bool = True
    amp_dtype: AmpDtype = AmpDtype.bfloat16
    grad_clip: float = 0.0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    select: EpochSelection = EpochSelection.best
    num_threads: int = 1
    loader: LoaderKind = LoaderKind.tensor
    num_workers: int = 0
    checkpoints: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"trainer.epochs must be >= 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"trainer.batch_size must be >= 1, got {self.batch_size}")
        _require(self.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1, got {self.eval_batch_size}")
        _require(self.grad_clip >= 0, f"trainer.grad_clip must be >= 0 (0 turns it off), got {self.grad_clip}")
        _require(self.num_threads >= 1, f"trainer.num_threads must be >= 1, got {self.num_threads}")
        _require(self.num_workers >= 0, f"trainer.num_workers must be >= 0, got {self.num_workers}")


# --------------------------------------------------------------------------- regularizer
class FairnessCriterion(StrEnum):
    dp = "dp"
    eo = "eo"


class AttackNorm(StrEnum):
    linf = "linf"
    l2 = "l2"


class AdversarialMethod(StrEnum):
    pgd = "pgd"
    trades = "trades"


class AttributionTarget(StrEnum):
    mask = "mask"
    sensitive = "sensitive"


class AttributionMethod(StrEnum):
    input_gradient = "input_gradient"
    integrated_gradients = "integrated_gradients"


@dataclass
class FairnessConfig:
    """Differentiable group-gap penalty on the batch (conf/regularizer/fairness.yaml)."""

    weight: float = 1.0
    criterion: FairnessCriterion = FairnessCriterion.dp

    def __post_init__(self) -> None:
        _require(self.weight >= 0, f"regularizer.fairness.weight must be >= 0, got {self.weight}")


@dataclass
class AttackConfig:
    """A PGD attack: ``steps`` steps of size ``alpha`` (default 2.5·eps/steps) inside the
    ``norm`` ball of radius ``eps``, from a random start or the clean input."""

    norm: AttackNorm = AttackNorm.linf
    eps: float = 0.1
    alpha: Optional[float] = None
    steps: int = 10
    random_start: bool = True

    def __post_init__(self) -> None:
        _require(self.eps > 0, f"attack eps must be > 0, got {self.eps}")
        _require(self.alpha is None or self.alpha > 0, f"attack alpha must be > 0 or null, got {self.alpha}")
        _require(self.steps >= 1, f"attack steps must be >= 1, got {self.steps}")

    @property
    def step_size(self) -> float:
        return self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps


@dataclass
class AdversarialConfig(AttackConfig):
    """Adversarial training. ``method=pgd`` (Madry): loss = (1 − weight)·CE(clean) +
    weight·CE(adversarial). ``method=trades``: CE(clean) + weight·KL(clean ‖ adversarial),
    weight being TRADES' β."""

    weight: float = 1.0
    method: AdversarialMethod = AdversarialMethod.pgd

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.weight >= 0, f"regularizer.adversarial.weight must be >= 0, got {self.weight}")
        _require(
            self.method != AdversarialMethod.pgd or self.weight <= 1,
            f"regularizer.adversarial.weight mixes clean and adversarial loss for method=pgd: must be in [0, 1], got {self.weight}",
        )


@dataclass
class LoRAConfig:
    """Low-rank adapters h = W₀x + (alpha/rank)·B·A·x on the Linear and Conv layers whose
    names match ``target``; every other parameter is frozen unless ``train`` names it.
    ``init_from`` is a finished run directory whose best checkpoint becomes the base."""

    rank: int = 4
    alpha: float = 8.0
    dropout: float = 0.0
    target: list[str] = field(default_factory=lambda: ["*"])
    train: list[str] = field(default_factory=lambda: ["head", "head.*"])
    init_from: Optional[str] = None
    merge: bool = False

    def __post_init__(self) -> None:
        _require(self.rank >= 1, f"regularizer.lora.rank must be >= 1, got {self.rank}")
        _require(self.alpha > 0, f"regularizer.lora.alpha must be > 0, got {self.alpha}")
        _require(0.0 <= self.dropout < 1.0, f"regularizer.lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class AttributionConfig:
    """Right for the right reasons (Ross et al. 2017): penalise the squared attribution of
    the summed log-probabilities on the annotation mask or the sensitive columns."""

    weight: float = 10.0
    target: AttributionTarget = AttributionTarget.mask
    method: AttributionMethod = AttributionMethod.input_gradient
    steps: int = 8

    def __post_init__(self) -> None:
        _require(self.weight >= 0, f"regularizer.attribution.weight must be >= 0, got {self.weight}")
        _require(self.steps >= 1, f"regularizer.attribution.steps must be >= 1, got {self.steps}")


REGULARIZER_SCHEMAS: dict[str, type] = {
    "fairness": FairnessConfig,
    "adversarial": AdversarialConfig,
    "lora": LoRAConfig,
    "attribution": AttributionConfig,
}


# --------------------------------------------------------------------------- evaluation
@dataclass
class RobustEvalConfig(AttackConfig):
    """PGD evaluation on the test split at each radius in ``eps`` (empty: none).
    ``limit`` evaluates the first N test examples only."""

    eps: list[float] = field(default_factory=list)
    steps: int = 20
    limit: Optional[int] = None

    def __post_init__(self) -> None:
        _require(all(e > 0 for e in self.eps), f"eval.robust.eps must all be > 0, got {list(self.eps)}")
        _require(self.steps >= 1, f"eval.robust.steps must be >= 1, got {self.steps}")
        _require(self.limit is None or self.limit > 0, f"eval.robust.limit must be > 0 or null, got {self.limit}")

    def at(self, eps: float) -> AttackConfig:
        """The attack at one radius."""
        return AttackConfig(norm=self.norm, eps=eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start)


@dataclass
class EvalConfig:
    robust: RobustEvalConfig = field(default_factory=RobustEvalConfig)


# --------------------------------------------------------------------------- explain
class Baseline(StrEnum):
    zeros = "zeros"
    blur = "blur"
    mean = "mean"


@dataclass
class ExplainConfig:
    """Attributions (captum) on ``n_samples`` test examples after training, their pictures,
    and explanation-quality metrics. ``sensitivity_samples`` bounds the expensive
    sensitivity_max to the first few of those examples."""

    enabled: bool = True
    methods: list[str] = field(default_factory=lambda: ["integrated_gradients", "saliency"])
    metrics: list[str] = field(
        default_factory=lambda: [
            "infidelity",
            "sensitivity",
            "randomization",
            "sparseness",
            "mask_mass",
            "sensitive_share",
        ]
    )
    n_samples: int = 32
    sensitivity_samples: int = 8
    baseline: Baseline = Baseline.zeros
    ig_steps: int = 32
    internal_batch_size: int = 64
    images: bool = True

    def __post_init__(self) -> None:
        _require(self.n_samples >= 1, f"explain.n_samples must be >= 1, got {self.n_samples}")
        _require(
            self.sensitivity_samples >= 0, f"explain.sensitivity_samples must be >= 0, got {self.sensitivity_samples}"
        )
        _require(self.ig_steps >= 1, f"explain.ig_steps must be >= 1, got {self.ig_steps}")
        _require(
            self.internal_batch_size >= 1, f"explain.internal_batch_size must be >= 1, got {self.internal_batch_size}"
        )


# --------------------------------------------------------------------------- run
@dataclass
class RunConfig:
    """The whole run. Group nodes are typed by their own schema (see ``register``)."""

    dataset: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    regularizer: dict[str, Any] = field(default_factory=dict)
    eval: EvalConfig = field(default_factory=EvalConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    seed: int = 0
    experiment_name: str = "default"


@dataclass
class RunSpec:
    """A validated run: the same tree as the config, as typed objects."""

    dataset: DatasetConfig
    model: MLPConfig | CNNConfig | RNNConfig | AttentionConfig
    optimizer: SGDConfig | AdamConfig
    scheduler: SchedulerConfig
    trainer: TrainerConfig
    regularizer: dict[str, FairnessConfig | AdversarialConfig | LoRAConfig | AttributionConfig]
    eval: EvalConfig
    explain: ExplainConfig
    seed: int
    experiment_name: str


SCHEMAS: dict[str, dict[str, type]] = {
    "dataset": {"dataset": DatasetConfig},
    "model": {"mlp": MLPConfig, "cnn": CNNConfig, "rnn": RNNConfig, "attention": AttentionConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig},
}


def register() -> None:
    """Store the schemas so that YAML files can start from them.

    ``conf/config.yaml`` starts from ``run_schema``; each group file starts from
    ``/schema/<group>/<name>@_here_`` (for example ``/schema/model/mlp@_here_``).
    """
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    cs.store(group="schema/scheduler", name="scheduler", node=SchedulerConfig)
    cs.store(group="schema/trainer", name="trainer", node=TrainerConfig)
    cs.store(group="schema/eval", name="eval", node=EvalConfig)
    cs.store(group="schema/explain", name="explain", node=ExplainConfig)
    for name, node in REGULARIZER_SCHEMAS.items():
        cs.store(group="schema/regularizer", name=name, node=node)


SINGLE_SCHEMAS: dict[str, type] = {
    "dataset": DatasetConfig,
    "scheduler": SchedulerConfig,
    "trainer": TrainerConfig,
    "eval": EvalConfig,
}


def _schema_for(group: str, node: DictConfig) -> type:
    if group in SINGLE_SCHEMAS:
        return SINGLE_SCHEMAS[group]
    name = node.get("name")
    schemas = SCHEMAS[group]
    if name not in schemas:
        raise DQUserError(f"unknown {group} {name!r}; allowed: {', '.join(schemas)}")
    return schemas[name]


def to_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed (or saved) config and return it as typed objects.

    Each group is merged onto its schema again, so a config read back from a run's
    ``.hydra/config.yaml`` is checked exactly like one Hydra just composed.

    Raises:
        DQUserError: with one line naming the bad key, its value and what is allowed.
    """
    parts: dict[str, Any] = {}
    for group in ("dataset", "model", "optimizer", "scheduler", "trainer"):
        if group not in cfg:
            raise DQUserError(f"the config has no {group!r} group")
        parts[group] = _typed(group, _schema_for(group, cfg[group]), cfg[group])
    parts["eval"] = _typed("eval", EvalConfig, cfg.get("eval") or {})
    parts["explain"] = _typed("explain", ExplainConfig, cfg.get("explain") or {})
    parts["regularizer"] = {}
    for name, node in (cfg.get("regularizer") or {}).items():
        if name not in REGULARIZER_SCHEMAS:
            raise DQUserError(f"unknown regularizer {name!r}; allowed: {', '.join(REGULARIZER_SCHEMAS)}")
        parts["regularizer"][name] = _typed(f"regularizer.{name}", REGULARIZER_SCHEMAS[name], node)
    return RunSpec(seed=int(cfg.seed), experiment_name=str(cfg.experiment_name), **parts)


def _typed(where: str, schema: type, node: Any) -> Any:
    """``node`` merged onto ``schema`` and turned into its dataclass (running its checks)."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except OmegaConfBaseException as error:
        raise DQUserError(f"{where}: {str(error).splitlines()[0]}") from error


def config_dir() -> Path:
    """The ``conf/`` tree: packaged as ``dq/conf`` in a wheel, at the top of a checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conf"
