"""How far to trust an explanation: one registry entry per metric of ``explain.metrics``.

- infidelity (Yeh et al. 2019, captum.metrics.infidelity): how well attribution · noise
  predicts the change of the target logit under small gaussian noise on the input (on
  the embeddings for text); normalised, so the scale of an attribution does not matter.
  Lower is better.
- sensitivity (captum.metrics.sensitivity_max): the largest relative change of the
  explanation under a small uniform perturbation, on the first ``sensitivity_samples``
  examples only (it explains each of them ``SENSITIVITY_SAMPLES`` more times). Lower is
  better.
- randomization → ``randomization_rho`` (Adebayo et al. 2018, model-parameter
  randomisation): Spearman correlation of |attribution| on the trained model and on a
  copy with every weight re-initialised, mean over examples. An explanation that
  survives losing the weights explains the input, not the model: lower is better. On
  tabular data each example's correlation is over the features present in it (non-zero
  inputs); on images it is over the whole map, and ``randomization_rho_nonzero`` is the
  same over the input's non-zero pixels (see ``_randomization``).
- sparseness: Gini index of |attribution| (Chalasani et al. 2020), mean over examples;
  0 = spread evenly, → 1 = on few elements.
- mask_mass: share of |attribution| inside the annotation mask (data with ``Split.mask``).
- sensitive_share: share of |attribution| on the sensitive attribute's input columns
  (tabular data where the attribute is a model input).
- pixel_flipping → ``faithfulness_pixel_flipping`` (Bach et al. 2015, through Quantus;
  dq.explain.faithfulness): area under the explained class's probability as pixels are
  set to 0, most relevant first. Lower is better. Images only, refused elsewhere before
  training; not in the default list (``explain.metrics`` opts in).

A metric that does not apply to the data is skipped (``applies`` says why), not filled
with NaN. Text metrics count real tokens only (padding has no attribution).
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max
from scipy.stats import spearmanr
from torch import nn

from dq.config.explain import ExplainConfig
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.explain.faithfulness import faithfulness_refusal, pixel_flipping
from dq.explain.methods import Attribution, Method, attribute, attribute_inputs
from dq.explain.space import Space
from dq.modalities import modality_of

INFIDELITY_NOISE = 0.1  # std of the gaussian noise, relative to the input scale
INFIDELITY_SAMPLES = 16  # noise draws per example
SENSITIVITY_RADIUS = 0.05  # L∞ radius of the uniform perturbation, relative to the input scale
SENSITIVITY_SAMPLES = 8  # perturbations per example


@dataclass
class Explained:
    """One method's attributions on the explained examples, and what the metrics need.

    ``rebuild(model)`` gives the same examples' space for another model (the randomised
    copy); ``mask`` is the examples' annotation mask (shaped like the inputs) or None.
    """

    method: Method
    space: Space
    target: torch.Tensor
    attribution: Attribution
    cfg: ExplainConfig
    rebuild: Callable[[nn.Module], Space]
    random_model: Callable[[], nn.Module]
    mask: torch.Tensor | None = None
    per_token: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.per_token = self.space.reduce(self.attribution.values)

    def magnitudes(self) -> list[torch.Tensor]:
        """|attribution| of each example, flattened, real positions only."""
        flat = self.per_token.abs().flatten(1)
        if self.space.valid is None:
            return list(flat)
        valid = self.space.valid.flatten(1)
        return [row[keep] for row, keep in zip(flat, valid, strict=True)]

    def present(self) -> list[torch.Tensor] | None:
        """Per example, which elements of ``magnitudes()`` are non-zero in the input
        (flattened); None for text, whose embeddings have no meaningful zeros."""
        if self.space.is_text:
            return None
        return list((self.space.inputs != 0).flatten(1).to(self.per_token.device))

    def compared(self) -> list[torch.Tensor] | None:
        """The elements ``randomization_rho`` (and compression's explanation shift, on the
        same scale) compares per example: the features present in the input on tabular
        data, where one-hot zeros are ties in any two maps; every element elsewhere."""
        return self.present() if modality_of(self.space.meta).columns else None


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[Explained], dict[str, float]]
    applies: Callable[[Explained], str | None] = lambda e: None


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# --------------------------------------------------------------------------- infidelity
def _infidelity(e: Explained) -> dict[str, float]:
    space, n = e.space, len(e.target)
    std = INFIDELITY_NOISE * space.scale

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        perturbed = space.clamp(inputs - torch.randn_like(inputs) * std)
        return inputs - perturbed, perturbed

    values = infidelity(
        space.forward,
        perturb,
        space.inputs,
        e.attribution.values,
        additional_forward_args=space.args,
        target=e.target,
        n_perturb_samples=INFIDELITY_SAMPLES,
        # captum wants every sub-batch to hold each example at least once
        max_examples_per_batch=min(max(e.cfg.internal_batch_size, n), n * INFIDELITY_SAMPLES),
        normalize=True,
    )
    return {"infidelity": float(values.mean())}


# --------------------------------------------------------------------------- sensitivity
def _sensitivity(e: Explained) -> dict[str, float]:
    space, k = e.space, min(e.cfg.sensitivity_samples, len(e.target))
    radius = SENSITIVITY_RADIUS * space.scale

    def perturb(inputs: torch.Tensor, radius: float) -> torch.Tensor:
        return space.clamp(inputs + torch.empty_like(inputs).uniform_(-radius, radius))

    def explain(
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        target: torch.Tensor,
        additional_forward_args: tuple[torch.Tensor, ...] | None = None,
        baselines: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor]:
        # captum passes the unperturbed inputs (and expanded baselines) as 1-tuples and
        # expects the explanation in the same form
        as_tuple = isinstance(inputs, tuple)
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        baselines = baselines[0] if isinstance(baselines, tuple) else baselines
        values = attribute_inputs(e.method, space, inputs, target, additional_forward_args, baselines, e.cfg)
        return (values,) if as_tuple else values

    kwargs: dict = {"target": e.target[:k]}
    if space.args is not None:
        kwargs["additional_forward_args"] = tuple(a[:k] for a in space.args)
    if e.method.baselines:
        kwargs["baselines"] = space.baselines[:k]
    values = sensitivity_max(
        explain,
        space.inputs[:k],
        perturb_func=perturb,
        perturb_radius=radius,
        n_perturb_samples=SENSITIVITY_SAMPLES,
        **kwargs,
    )
    return {"sensitivity": float(values.mean())}


def _sensitivity_applies(e: Explained) -> str | None:
    return "explain.sensitivity_samples is 0" if e.cfg.sensitivity_samples == 0 else None


# --------------------------------------------------------------------------- randomization
def randomized_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every parameter re-drawn (from torch's RNG): each
    module's own ``reset_parameters`` where it has one, else a normal draw with the
    trained parameter's std. Buffers (input normalisation) are kept."""
    copy = deepcopy(model)
    done: set[int] = set()
    with torch.no_grad():
        for module in copy.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                done.update(id(p) for p in module.parameters(recurse=False))
        for parameter in copy.parameters():
            if id(parameter) not in done:
                std = float(parameter.std()) if parameter.numel() > 1 else 0.0
                parameter.normal_(0.0, std if std > 0 else 0.02)
    return copy.eval()


def _randomization(e: Explained) -> dict[str, float]:
    """Adebayo et al.'s check, compared where attributions can differ. On tabular data,
    over the features present in each input (non-zero): a one-hot column that is 0 gets
    an attribution of exactly 0 from attribution × input methods (integrated gradients,
    input × gradient) in both models, and those ties alone pushed rho to 1.00 for
    unrelated maps on Adult. On images the protocol stays whole-map, and
    ``randomization_rho_nonzero`` repeats it over the input's non-zero pixels, so a
    caveat can tell a rho made by a black background from one made by the weights."""
    space = e.rebuild(e.random_model())
    random_explained = Explained(
        e.method, space, e.target, attribute(e.method, space, e.target, e.cfg), e.cfg, e.rebuild, e.random_model
    )
    trained, random = e.magnitudes(), random_explained.magnitudes()
    values = {"randomization_rho": mean_rank_correlation(trained, random, e.compared())}
    if modality_of(e.space.meta).pixels:
        values["randomization_rho_nonzero"] = mean_rank_correlation(trained, random, e.present())
    return values


def mean_rank_correlation(
    trained: list[torch.Tensor], random: list[torch.Tensor], keep: list[torch.Tensor] | None = None
) -> float:
    """Mean over examples of ``rank_correlation``, each over its ``keep`` elements (all without)."""
    if keep is None:
        pairs = zip(trained, random, strict=True)
    else:
        pairs = ((t[k], r[k]) for t, r, k in zip(trained, random, keep, strict=True))
    return _mean([rank_correlation(t, r) for t, r in pairs])


def rank_correlation(trained: torch.Tensor, random: torch.Tensor) -> float:
    """Spearman's rho of two attribution maps. A constant map (LIME's lasso often gives
    all zeros on a random model) shares no ranking with a varying one: 0; two constant
    maps (or fewer than two elements): NaN, left out of the mean."""
    if trained.numel() < 2:
        return float("nan")
    flat = [bool((t == t[0]).all()) for t in (trained, random)]
    if all(flat):
        return float("nan")
    if any(flat):
        return 0.0
    return float(spearmanr(trained.cpu().numpy(), random.cpu().numpy()).statistic)


# --------------------------------------------------------------------------- sparseness
def gini(values: torch.Tensor) -> float:
    """Gini index of non-negative ``values`` (1-d): 0 when all equal, (n−1)/n when one
    holds everything; NaN when all are zero."""
    a = values.double().sort().values
    n, total = a.numel(), float(a.sum())
    if n == 0 or total <= 0:
        return float("nan")
    ranks = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return float(((2 * ranks - n - 1) * a).sum()) / (n * total)


def _sparseness(e: Explained) -> dict[str, float]:
    return {"sparseness": _mean([gini(row) for row in e.magnitudes()])}


# --------------------------------------------------------------------------- shares
def _share(magnitude: torch.Tensor, inside: torch.Tensor) -> float:
    """Mean over examples of the share of |attribution| where ``inside`` is true."""
    magnitude = magnitude.flatten(1).double()
    inside = inside.flatten(1).to(magnitude.dtype)
    total = magnitude.sum(dim=1)
    shares = (magnitude * inside).sum(dim=1) / total
    return _mean([float(s) for s in shares[total > 0]])


def _mask_mass(e: Explained) -> dict[str, float]:
    assert e.mask is not None
    mask = e.mask.to(e.per_token.device)
    if mask.shape != e.per_token.shape:
        mask = mask.expand_as(e.per_token)
    return {"mask_mass": _share(e.per_token.abs(), mask != 0)}  # bool masks (decoy data) and 0/1 ones


def _mask_applies(e: Explained) -> str | None:
    return None if e.mask is not None else "the data has no annotation masks"


def _sensitive_share(e: Explained) -> dict[str, float]:
    inside = torch.zeros_like(e.per_token, dtype=torch.bool)
    inside[:, list(e.space.meta.sensitive_columns)] = True
    return {"sensitive_share": _share(e.per_token.abs(), inside)}


def _sensitive_applies(e: Explained) -> str | None:
    meta = e.space.meta
    if not modality_of(meta).columns:
        return f"{meta.modality} data has no sensitive input columns"
    if not meta.sensitive_columns:
        return "the sensitive attribute is not a model input (dataset.include_sensitive=false)"
    return None


# --------------------------------------------------------------------------- faithfulness
def _pixel_flipping(e: Explained) -> dict[str, float]:
    return {"faithfulness_pixel_flipping": pixel_flipping(e.space, e.attribution.values, e.target)}


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("infidelity", _infidelity),
        Metric("sensitivity", _sensitivity, _sensitivity_applies),
        Metric("randomization", _randomization),
        Metric("sparseness", _sparseness),
        Metric("mask_mass", _mask_mass, _mask_applies),
        Metric("sensitive_share", _sensitive_share, _sensitive_applies),
        Metric("pixel_flipping", _pixel_flipping),
    )
}


# Metrics that must refuse data they cannot judge (before training), not skip it.
REFUSALS: dict[str, Callable[[DatasetMeta], str | None]] = {"pixel_flipping": faithfulness_refusal}


def check_metrics(names: list[str], meta: DatasetMeta | None = None) -> None:
    """DQUserError in one line for an unknown metric or, given ``meta``, one that refuses
    the data (pixel_flipping off images)."""
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise DQUserError(f"unknown explain metric {unknown[0]!r}; allowed: {', '.join(METRICS)}")
    if meta is not None:
        for name in names:
            reason = REFUSALS[name](meta) if name in REFUSALS else None
            if reason is not None:
                raise DQUserError(reason)


def judge(e: Explained, names: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics ``names`` that apply to ``e`` (keys relative to ``explain/<method>/``),
    the convergence delta where the method has one, and why the others were skipped."""
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    if e.attribution.delta is not None:
        values["delta_abs_mean"] = float(e.attribution.delta.abs().mean())
    for name in names:
        metric = METRICS[name]
        reason = metric.applies(e)
        if reason is not None:
            skipped[name] = reason
            continue
        values.update(metric.compute(e))
    return values, skipped
