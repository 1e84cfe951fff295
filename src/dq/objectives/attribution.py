"""Right for the right reasons: an input-attribution penalty (Ross, Hughes & Doshi-Velez 2017).

    RRR(x) = Σ_d ( A_d · a_d(x) )²,   a(x) = attribution of f(x) = Σ_k log p_k(x)

averaged over the batch, where ``A`` marks the inputs the model should not rely on:

- ``target: mask``: the batch's annotation mask (``batch.mask``, shaped like ``x``; the
  decoy datasets give one, marking the decoy swatch).
- ``target: sensitive``: the tabular columns that encode the sensitive attribute
  (``meta.sensitive_columns``; needs ``dataset.include_sensitive=true``).

and ``a`` is, by ``method``:

- ``input_gradient``: ∂f/∂x, by double backpropagation (the gradient is built with
  ``create_graph=True``, so the penalty's own gradient reaches the parameters);
- ``integrated_gradients``: (x − b) ⊙ mean_k ∇f(b + α_k (x − b)) from the zero baseline
  b = 0 at the ``steps`` midpoints α_k = (k − ½)/steps, equally differentiable.

The penalty needs one extra forward and backward pass over the batch (``steps`` of them
for integrated gradients, batched into one; chunking them would not bound memory, since
every chunk's graph is kept for the loss's one backward pass): the clean logits the
objective passes in were computed without a gradient to the input. The model stays in train mode, as the
engine left it (cuDNN's RNN backward needs it); batch-norm running statistics are left
untouched by these extra passes. Token ids cannot be differentiated, so text is refused.

Example::

    term = AttributionPenalty(weight=100.0, method=AttributionMethod.input_gradient)
    loss = F.cross_entropy(model(batch.x), batch.y) + term.weight * term(model, batch, logits)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from dq.config.validation import require
from dq.data_records import Batch, DatasetMeta
from dq.errors import DQUserError
from dq.modalities import modality_of
from dq.objectives.base import Term
from dq.objectives.registry import register_term


class AttributionTarget(StrEnum):
    mask = "mask"
    sensitive = "sensitive"


class AttributionMethod(StrEnum):
    input_gradient = "input_gradient"
    integrated_gradients = "integrated_gradients"


@dataclass
class AttributionConfig:
    """``regularizer.attribution``: penalise the squared attribution of the summed
    log-probabilities on the annotation mask or the sensitive columns."""

    weight: float = 10.0
    target: AttributionTarget = AttributionTarget.mask
    method: AttributionMethod = AttributionMethod.input_gradient
    steps: int = 8

    def validate(self) -> None:
        require(self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")


ScalarFn = Callable[[torch.Tensor], torch.Tensor]


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is in a lower precision (autocast), else as it is."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def summed_log_probs(model: nn.Module) -> ScalarFn:
    """``x -> Σ_k log p_k(x)`` per example ([N]): the function Ross et al. explain."""
    return lambda x: torch.log_softmax(at_least_float32(model(x)), dim=1).sum(dim=1)


def input_gradient(fn: ScalarFn, x: torch.Tensor) -> torch.Tensor:
    """∂ fn(x)_i / ∂ x_i for every example, differentiable (``create_graph=True``)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    return grad


def integrated_gradients(fn: ScalarFn, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrated gradients of ``fn`` from the zero baseline, ``steps`` midpoint Riemann
    points evaluated in one batch of ``steps · N``, differentiable (``create_graph=True``)."""
    x = x.detach()
    alphas = (torch.arange(steps, device=x.device, dtype=x.dtype) + 0.5) / steps
    path = (alphas.view(-1, *([1] * x.dim())) * x.unsqueeze(0)).flatten(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(path).sum(), path, create_graph=True)
    return x * grad.view(steps, *x.shape).mean(dim=0)


@contextmanager
def frozen_batch_norm_stats(model: nn.Module) -> Iterator[None]:
    """Batch norm keeps normalising with batch statistics (train mode) but its running
    statistics are not updated by the forward passes inside."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            saved.append((module, module.momentum, module.num_batches_tracked.clone()))
            module.momentum = 0.0
    try:
        yield
    finally:
        for module, momentum, tracked in saved:
            module.momentum = momentum
            module.num_batches_tracked.copy_(tracked)


class AttributionPenalty(Term):
    """Mean over the batch of Σ_d (A_d · a_d(x))²; see the module docstring.

    Args:
        weight: the penalty's weight in the objective (Ross et al.'s λ₁).
        method: ``input_gradient`` or ``integrated_gradients``.
        steps: Riemann points for integrated gradients.
        columns: feature columns to penalise (``target: sensitive``); None takes
            ``batch.mask`` (``target: mask``).
    """

    name = "attribution"

    def __init__(
        self,
        weight: float,
        method: AttributionMethod = AttributionMethod.input_gradient,
        steps: int = 8,
        columns: tuple[int, ...] | None = None,
    ) -> None:
        self.weight = weight
        self.method = AttributionMethod(method)
        self.steps = steps
        self.columns = columns

    def region(self, batch: Batch) -> torch.Tensor:
        """``A``: the annotation mask, or a 0/1 row over the features for the sensitive columns."""
        if self.columns is None:
            if batch.mask is None:
                raise DQUserError("regularizer attribution (target=mask) got a batch without an annotation mask")
            return batch.mask
        row = batch.x.new_zeros(batch.x.shape[1:])
        row[..., list(self.columns)] = 1.0
        return row

    def attribution(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        fn = summed_log_probs(model)
        # The penalty's gradient differentiates a gradient: attention must run the math kernel
        # of scaled_dot_product_attention, since the fused kernels have no double backward.
        with frozen_batch_norm_stats(model), sdpa_kernel(SDPBackend.MATH):
            if self.method == AttributionMethod.integrated_gradients:
                return integrated_gradients(fn, x, self.steps)
            return input_gradient(fn, x)

    def __call__(self, model: nn.Module, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        region = self.region(batch)
        if not bool(region.any()):
            return logits.new_zeros((), dtype=torch.float32)
        attribution = at_least_float32(self.attribution(model, batch.x))
        masked = attribution * region.to(attribution.dtype)  # a bool mask becomes 0/1 for this batch only
        return masked.pow(2).flatten(1).sum(dim=1).mean()


@register_term("attribution", schema=AttributionConfig)
def build_attribution(cfg: AttributionConfig, meta: DatasetMeta) -> AttributionPenalty:
    modality = modality_of(meta)
    if modality.tokens:
        raise DQUserError(
            f"regularizer attribution needs differentiable inputs; dataset {meta.name} is text "
            "(token ids have no input gradient): use image data with a mask or tabular data"
        )
    target = AttributionTarget(cfg.target)
    columns: tuple[int, ...] | None = None
    if target == AttributionTarget.mask and not meta.has_mask:
        raise DQUserError(
            f"regularizer attribution target=mask needs data with annotation masks; dataset {meta.name} has none "
            "(the decoy datasets have them: dataset=decoy_mnist or decoy_fashion_mnist)"
        )
    if target == AttributionTarget.sensitive:
        if not modality.columns:
            raise DQUserError(
                f"regularizer attribution target=sensitive is for tabular data; dataset {meta.name} is {meta.modality}"
            )
        if not meta.sensitive_columns:
            raise DQUserError(
                f"regularizer attribution target=sensitive needs the sensitive attribute among the inputs: "
                f"set dataset.include_sensitive=true (dataset {meta.name})"
            )
        columns = tuple(meta.sensitive_columns)
    return AttributionPenalty(cfg.weight, cfg.method, cfg.steps, columns)
