"""The attribution methods, one registry entry each: which captum class computes it, its
layer variant for token models, and the options it needs.

Every method attributes the logit of the target class (the predicted one). On text the
attribution is to the embedding layer's output: through captum's layer class where it
has one that interpolates at the layer (LayerIntegratedGradients,
LayerGradientXActivation, LayerDeepLift), else by running the method itself on the
embeddings through ``EmbeddingForward`` (GradientShap, occlusion, LIME, Kernel SHAP).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    LayerDeepLift,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Lime,
    Occlusion,
    Saliency,
)
from torch import nn

from dq.config.explain import ExplainConfig
from dq.explain.space import Space
from dq.registry import Registry

Options = Callable[[Space, ExplainConfig], dict[str, Any]]


@dataclass(frozen=True)
class Method:
    """One attribution method.

    Attributes:
        algorithm: captum class run on ``space.forward`` and float inputs.
        layer: captum's layer variant, run on ``model.embedding`` for token inputs (None:
            the algorithm runs on the embeddings through ``EmbeddingForward``).
        options: extra ``attribute`` keywords (steps, windows, samples).
        init, layer_init: constructor keywords.
        baselines: whether the method takes baselines.
        absolute: report |attribution| (saliency's convention).
        delta: the method returns a convergence delta (completeness check).
        per_example: one surrogate model per example (LIME, Kernel SHAP), each with its
            own feature mask.
        rescale_rules: DeepLift: needs every nonlinearity as a module it can hook.
    """

    name: str
    algorithm: type
    layer: type | None = None
    options: Options = lambda space, cfg: {}
    init: Mapping[str, Any] = field(default_factory=dict)
    layer_init: Mapping[str, Any] = field(default_factory=dict)
    baselines: bool = True
    absolute: bool = False
    delta: bool = False
    per_example: bool = False
    rescale_rules: bool = False


def _ig_options(space: Space, cfg: ExplainConfig) -> dict[str, Any]:
    return {"n_steps": cfg.ig_steps, "internal_batch_size": cfg.internal_batch_size}


def _occlusion_options(space: Space, cfg: ExplainConfig) -> dict[str, Any]:
    window, strides = space.occlusion_window()
    return {"sliding_window_shapes": window, "strides": strides, "perturbations_per_eval": cfg.internal_batch_size}


GRADIENT_SHAP_SAMPLES = 16

# One registry entry per method (dq.registry, as for datasets, models and regularizers).
# The methods are records (a captum class and its options), not code of their own, so
# they share this module; ``explain.methods`` lists their names.
METHODS: Registry[Method] = Registry("explain method")
for _method in (
    Method("integrated_gradients", IntegratedGradients, LayerIntegratedGradients, options=_ig_options, delta=True),
    Method(
        "saliency",
        Saliency,
        LayerGradientXActivation,
        layer_init={"multiply_by_inputs": False},
        baselines=False,
        absolute=True,
    ),
    Method("input_x_gradient", InputXGradient, LayerGradientXActivation, baselines=False),
    Method("deeplift", DeepLift, LayerDeepLift, rescale_rules=True),
    # LayerGradientShap draws its points between baseline and input in input space,
    # which token ids do not have: on text GradientShap runs on the embeddings.
    Method(
        "gradient_shap",
        GradientShap,
        options=lambda space, cfg: {"n_samples": GRADIENT_SHAP_SAMPLES, "stdevs": 0.0},
    ),
    Method("occlusion", Occlusion, options=_occlusion_options),
    Method("lime", Lime, per_example=True),
    Method("kernel_shap", KernelShap, per_example=True),
):
    METHODS.add(_method.name, _method)


def surrogate_samples(num_features: int) -> int:
    """Perturbed inputs per example for LIME / Kernel SHAP: four per interpretable feature,
    between 64 and 512 (Kernel SHAP's regression needs more samples than features)."""
    return min(512, max(64, 4 * num_features))


def lookup(name: str) -> Method:
    """The method ``name`` (DQUserError for an unknown name, listing the allowed ones)."""
    return METHODS.get(name).value


# Nonlinearities captum's DeepLift has no rule for (its rules: ReLU, ELU, LeakyReLU,
# Sigmoid, Tanh, Softmax, max pooling); it would silently use their plain gradient.
NO_RESCALE_RULE = (nn.GELU, nn.SiLU, nn.Mish, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.SELU, nn.CELU)


# The nonlinearities DeepLift's rescale rule hooks: each must run once per forward pass.
RESCALED = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def reused_nonlinearities(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The ``RESCALED`` modules that one forward pass of ``example`` calls more than once
    (torchvision's ResNet blocks call their one ReLU twice): captum's DeepLift keeps one
    input per module and fails on them. The model's train/eval mode is restored."""
    calls: dict[str, int] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, _o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.named_modules()
        if isinstance(module, RESCALED)
    ]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return sorted(name for name, count in calls.items() if count > 1)


def refusal(method: Method, model: nn.Module, modality: str, example: torch.Tensor) -> str | None:
    """Why ``method`` cannot explain ``model`` (one line), or None when it can; ``example``
    is one valid input (a batch of one) for the checks that run the model."""
    if not method.rescale_rules:
        return None
    where = f"explain method {method.name} does not apply to {type(model).__name__} on {modality} data"
    fused = sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.RNNBase | nn.MultiheadAttention)})
    if fused:
        return (
            f"{where}: DeepLift's rescale rule needs every nonlinearity as a module, but the gates / softmax of "
            f"{', '.join(fused)} run inside fused ops; use integrated_gradients or gradient_shap"
        )
    unruled = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NO_RESCALE_RULE)})
    if unruled:
        return (
            f"{where}: captum's DeepLift has no rescale rule for {', '.join(unruled)}; "
            f"use integrated_gradients or gradient_shap"
        )
    reused = reused_nonlinearities(model, example)
    if reused:
        return (
            f"{where}: captum's DeepLift needs each nonlinearity module to run once per forward pass, but "
            f"{', '.join(reused[:3])}{' ...' if len(reused) > 3 else ''} run more than once; "
            "use integrated_gradients or gradient_shap"
        )
    return None


@dataclass
class Attribution:
    """Attributions shaped like ``space.inputs`` and, for methods that have one, the
    per-example convergence delta (sum of attributions − (f(x) − f(baseline)))."""

    values: torch.Tensor
    delta: torch.Tensor | None = None


def attribute(method: Method, space: Space, target: torch.Tensor, cfg: ExplainConfig) -> Attribution:
    """``method`` on every example of ``space`` for the logit ``target`` [N]."""
    if space.is_text and method.layer is not None:
        algorithm = method.layer(space.model, space.model.embedding, **method.layer_init)
        kwargs = method.options(space, cfg)
        if method.baselines:
            kwargs["baselines"] = space.baseline_ids
        if method.delta:
            kwargs["return_convergence_delta"] = True
        out = algorithm.attribute(space.ids, target=target, **kwargs)
        values, delta = out if method.delta else (out, None)
        values = values.abs() if method.absolute else values
        return Attribution(values.detach().contiguous(), None if delta is None else delta.detach())
    if method.delta:
        values, delta = attribute_inputs(
            method, space, space.inputs, target, space.args, space.baselines, cfg, return_delta=True
        )
        return Attribution(values, delta)
    return Attribution(attribute_inputs(method, space, space.inputs, target, space.args, space.baselines, cfg))


def attribute_inputs(
    method: Method,
    space: Space,
    inputs: torch.Tensor,
    target: torch.Tensor,
    args: tuple[torch.Tensor, ...] | None,
    baselines: torch.Tensor | None,
    cfg: ExplainConfig,
    return_delta: bool = False,
) -> Any:
    """``method`` on float ``inputs`` through ``space.forward`` (also what sensitivity_max
    calls on perturbed inputs, with target, args and baselines expanded to match)."""
    algorithm = method.algorithm(space.forward, **method.init)
    kwargs = method.options(space, cfg)
    if method.per_example:
        return _per_example(algorithm, space, inputs, target, args, baselines, cfg)
    if method.baselines:
        kwargs["baselines"] = baselines
    if return_delta:
        kwargs["return_convergence_delta"] = True
    out = algorithm.attribute(inputs, target=target, additional_forward_args=args, **kwargs)
    # contiguous: captum's metrics .view() the attributions (gradients through a
    # permute, as in the row-wise image RNN, are not)
    if return_delta:
        return out[0].detach().contiguous(), out[1].detach()
    return (out.abs() if method.absolute else out).detach().contiguous()


def _per_example(
    algorithm: Any,
    space: Space,
    inputs: torch.Tensor,
    target: torch.Tensor,
    args: tuple[torch.Tensor, ...] | None,
    baselines: torch.Tensor | None,
    cfg: ExplainConfig,
) -> torch.Tensor:
    """LIME / Kernel SHAP fit one surrogate per example: call captum one example at a
    time, each with its own feature mask and sample count."""
    masks = space.feature_masks(inputs, args)
    target = torch.as_tensor(target, device=inputs.device).reshape(-1).expand(inputs.shape[0])
    rows = []
    for i, mask in enumerate(masks):
        samples = surrogate_samples(int(mask.max()) + 1)
        base = None
        if baselines is not None:
            base = baselines[i : i + 1] if baselines.shape[0] == inputs.shape[0] else baselines[:1]
        rows.append(
            algorithm.attribute(
                inputs[i : i + 1],
                target=target[i : i + 1],
                additional_forward_args=None if args is None else tuple(a[i : i + 1] for a in args),
                baselines=base,
                feature_mask=mask,
                n_samples=samples,
                perturbations_per_eval=min(samples, cfg.internal_batch_size),
            ).detach()
        )
    return torch.cat(rows)
