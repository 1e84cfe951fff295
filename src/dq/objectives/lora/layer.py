"""LoRA: low-rank adapters on frozen Linear and Conv layers (Hu et al. 2021, arXiv:2106.09685).

An adapted layer computes ``h = W₀x + (alpha/rank)·B(A(dropout(x)))`` with the base
layer ``W₀`` (and its bias) frozen. ``A`` starts Kaiming-uniform (like ``nn.Linear``)
and ``B`` at zero, so an adapted model starts out computing exactly what its base did.

- ``LoRALinear``: A = Linear(in → rank), B = Linear(rank → out), both without bias:
  ``rank·(in + out)`` trainable parameters.
- ``LoRAConv1d`` / ``LoRAConv2d``: A = a conv with the base's kernel, stride, padding,
  dilation and padding mode (groups=1) and ``rank`` output channels, B = a 1×1 conv
  (rank → out): ``rank·(in·k + out)`` parameters for Conv1d with kernel ``k`` and
  ``rank·(in·k·k + out)`` for Conv2d with a ``k×k`` kernel (``rank·(in·∏kernel + out)``).
  Since B is 1×1, B∘A is the conv with kernel ``Σ_r B[o, r]·A[r, i, …]`` and the same
  stride/padding, which is what ``merge_lora`` folds into the base kernel.

``apply_lora(model, cfg)`` adapts every Linear / Conv1d / Conv2d (groups=1) whose
qualified module name matches a ``target`` pattern (``fnmatch``, ``*`` crosses dots),
freezes all parameters, then unfreezes the adapters and whatever ``train`` names: a
parameter is trained fully when its own qualified name or the name of any module that
holds it matches a ``train`` pattern (so ``head`` trains the classifier and
``encoder.layers.*.self_attn.in_proj_*`` reaches raw parameters). A layer that ``train``
covers is not adapted. ``target: []`` gives plain freezing by name, without adapters.
Recurrent layers (LSTM, GRU) and raw parameters (the attention models' CLS token and
positions, MultiheadAttention's ``in_proj_weight``) are never adapted: frozen unless
``train`` names them. Buffers are not parameters: BatchNorm running statistics still
move in train mode.

``nn.MultiheadAttention`` and the fast path of ``nn.TransformerEncoderLayer`` read
``out_proj.weight`` / ``linear1.weight`` directly instead of calling the layer, so the
adapters expose ``weight`` (``W₀ + (alpha/rank)·B·A``, differentiable) and ``bias``:
``out_proj`` is adapted (gradients reach its A and B; adapter dropout does not apply to
it, since its forward is never called) and the inference fast path sees the adapted
weights. ``merge_lora(model)`` folds every adapter into a plain base layer again.

Why not peft: it imports transformers, accelerate, safetensors and huggingface_hub even
for a plain ``nn.Module`` (a large install for four small model families), wraps the
model so that every state-dict key changes (``base_model.model.…``), which checkpoints,
``dq.load_run`` and ``init_from`` would have to translate, and dq's semantics
(``train`` patterns on modules and raw parameters, one-line ``DQUserError``s listing the
adaptable layers, folding a LoRA run's checkpoint into a plain base) would still be code
of ours. The adapters themselves are a few lines each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import torch
from torch import nn

from dq.errors import DQUserError
from dq.objectives.lora.config import LoRAConfig

__all__ = [
    "ADAPTABLE",
    "LoRAConv1d",
    "LoRAConv2d",
    "LoRALayer",
    "LoRALinear",
    "LoRASummary",
    "adaptable_layers",
    "apply_lora",
    "fold_lora_state",
    "merge_lora",
]


# Layer types an adapter can wrap; ConvTranspose and Conv3d are not among them.
ADAPTABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


class LoRALayer(nn.Module):
    """A frozen ``base`` layer plus the low-rank update ``scaling · B(A(dropout(x)))``.

    ``scaling = alpha / rank`` is kept as a buffer so that a checkpoint alone says how
    to fold its adapters (``fold_lora_state``).
    """

    scaling: torch.Tensor

    def __init__(self, base: nn.Module, lora_A: nn.Module, lora_B: nn.Module, cfg: LoRAConfig) -> None:
        super().__init__()
        self.base = base
        self.lora_A = lora_A
        self.lora_B = lora_B
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.register_buffer("scaling", torch.tensor(cfg.alpha / cfg.rank, dtype=torch.float32))
        self.rank = cfg.rank
        base.requires_grad_(False)
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A.to(device=device, dtype=dtype)
        self.lora_B.to(device=device, dtype=dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # nn.Linear's / nn.Conv's own init
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """``(alpha/rank)·B·A`` in the base weight's shape."""
        return self.scaling.to(self.lora_B.weight.dtype) * _combine(self.lora_B.weight, self.lora_A.weight)

    @property
    def weight(self) -> torch.Tensor:
        """The adapted weight ``W₀ + (alpha/rank)·B·A``, for code that reads weights directly."""
        return self.base.weight + self.delta_weight()

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.lora_B(self.lora_A(self.dropout(x)))
        return self.base(x) + self.scaling.to(update.dtype) * update

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """The base layer with the update folded into its weight (frozen like the base)."""
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        return self.base

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling.item():g}"


class LoRALinear(LoRALayer):
    """LoRA on an ``nn.Linear``: ``rank·(in_features + out_features)`` trainable parameters."""

    def __init__(self, base: nn.Linear, cfg: LoRAConfig) -> None:
        lora_A = nn.Linear(base.in_features, cfg.rank, bias=False)
        lora_B = nn.Linear(cfg.rank, base.out_features, bias=False)
        super().__init__(base, lora_A, lora_B, cfg)


class _LoRAConv(LoRALayer):
    conv: type[nn.Conv1d] | type[nn.Conv2d]

    def __init__(self, base: nn.Conv1d | nn.Conv2d, cfg: LoRAConfig) -> None:
        if base.groups != 1:
            raise ValueError(f"LoRA needs a conv with groups=1, got groups={base.groups}")
        lora_A = self.conv(
            base.in_channels,
            cfg.rank,
            base.kernel_size,  # type: ignore[arg-type]
            stride=base.stride,  # type: ignore[arg-type]
            padding=base.padding,  # type: ignore[arg-type]
            dilation=base.dilation,  # type: ignore[arg-type]
            padding_mode=base.padding_mode,
            bias=False,
        )
        lora_B = self.conv(cfg.rank, base.out_channels, 1, bias=False)
        super().__init__(base, lora_A, lora_B, cfg)


class LoRAConv1d(_LoRAConv):
    """LoRA on an ``nn.Conv1d`` with kernel ``k``: ``rank·(in_channels·k + out_channels)`` parameters."""

    conv = nn.Conv1d


class LoRAConv2d(_LoRAConv):
    """LoRA on an ``nn.Conv2d`` with a ``k×k`` kernel: ``rank·(in_channels·k·k + out_channels)`` parameters."""

    conv = nn.Conv2d


def _combine(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """B·A for Linear (``[out, r] @ [r, in]``) and conv (1×1 ``B [out, r, 1…]`` after ``A [r, in, k…]``)."""
    return (b.flatten(1) @ a.flatten(1)).view(b.shape[0], *a.shape[1:])


def _wrap(layer: nn.Module, cfg: LoRAConfig) -> LoRALayer:
    if isinstance(layer, nn.Conv2d):
        return LoRAConv2d(layer, cfg)
    if isinstance(layer, nn.Conv1d):
        return LoRAConv1d(layer, cfg)
    return LoRALinear(layer, cfg)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- applying
@dataclass
class LoRASummary:
    """What ``apply_lora`` did: the adapted layers, the fully trained parameters, the counts."""

    adapted: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    total: int = 0
    trainable: int = 0

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def describe(self) -> str:
        """One line for the console."""
        adapted = ", ".join(self.adapted) or "none"
        trained = ", ".join(self.trained) or "none"
        return (
            f"LoRA: {self.trainable:,} of {self.total:,} parameters trainable ({self.trainable_fraction:.2%}); "
            f"adapted: {adapted}; trained fully: {trained}"
        )


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _covered(qualified: str, patterns: list[str]) -> bool:
    """True when ``qualified`` or one of its ancestor module names matches a pattern."""
    parts = qualified.split(".")
    return any(_matches(".".join(parts[:i]), patterns) for i in range(1, len(parts) + 1))


def adaptable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers an adapter can wrap, by qualified name, in module order."""
    return {name: module for name, module in model.named_modules() if name and _adaptable(module)}


def _adaptable(module: nn.Module) -> bool:
    # A subclass counts only if it keeps the base class's forward: MultiheadAttention's
    # out_proj (NonDynamicallyQuantizableLinear) does; quantised or parametrised layers don't.
    kind = next((k for k in ADAPTABLE if isinstance(module, k)), None)
    return kind is not None and type(module).forward is kind.forward and getattr(module, "groups", 1) == 1


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> LoRASummary:
    """Adapt ``model`` in place as ``cfg`` says (see the module docstring) and summarise.

    Raises:
        DQUserError: a ``target`` pattern matches no adaptable layer, or a ``train``
            pattern matches no module or parameter (one line listing what exists).
        ValueError: ``model`` already holds adapters.
    """
    if any(isinstance(m, LoRALayer) for m in model.modules()):
        raise ValueError("the model already has LoRA adapters")
    layers = adaptable_layers(model)
    for pattern in cfg.target:
        if not any(fnmatchcase(name, pattern) for name in layers):
            raise DQUserError(
                f"regularizer.lora.target pattern {pattern!r} matches no adaptable layer (Linear, Conv1d, Conv2d); "
                f"adaptable: {', '.join(layers) or 'none'}"
            )
    names = [n for n, _ in model.named_modules() if n] + [n for n, _ in model.named_parameters()]
    for pattern in cfg.train:
        if not any(fnmatchcase(name, pattern) for name in names):
            top = [n for n, _ in model.named_children()] + [n for n, _ in model.named_parameters(recurse=False)]
            raise DQUserError(
                f"regularizer.lora.train pattern {pattern!r} matches no module or parameter; "
                f"top-level names: {', '.join(top)}"
            )

    train = list(cfg.train)
    chosen = [
        name
        for name, layer in layers.items()
        if _matches(name, list(cfg.target))
        and not any(_covered(f"{name}.{p}", train) for p, _ in layer.named_parameters())
    ]
    for name in chosen:
        _replace(model, name, _wrap(layers[name], cfg))

    model.requires_grad_(False)
    summary = LoRASummary(adapted=chosen)
    for name, param in model.named_parameters():
        if _is_adapter_parameter(name):
            param.requires_grad_(True)
        elif _covered(name, train):
            param.requires_grad_(True)
            summary.trained.append(name)
    params = list(model.parameters())
    summary.total = sum(p.numel() for p in params)
    summary.trainable = sum(p.numel() for p in params if p.requires_grad)
    return summary


def _is_adapter_parameter(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2] in ("lora_A", "lora_B")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


# --------------------------------------------------------------------------- merging
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain base layer back.

    Works in place and returns the model (the base itself when ``model`` is one adapter).
    The merged model computes what the adapted one did in eval mode (adapter dropout off).
    """
    if isinstance(model, LoRALayer):
        return model.merged()
    adapters = [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALayer)]
    for name, adapter in adapters:
        _replace(model, name, adapter.merged())
    return model


def fold_lora_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of an adapted model turned into its merged base's state dict.

    ``X.base.weight`` + ``X.lora_A.weight`` / ``X.lora_B.weight`` / ``X.scaling`` become
    ``X.weight = W₀ + scaling·B·A``; ``X.base.bias`` becomes ``X.bias``. A state dict
    without adapters comes back unchanged.
    """
    prefixes = [key[: -len(".lora_A.weight")] for key in state if key.endswith(".lora_A.weight")]
    if not prefixes:
        return state
    folded = dict(state)
    for prefix in prefixes:
        a = folded.pop(f"{prefix}.lora_A.weight")
        b = folded.pop(f"{prefix}.lora_B.weight")
        scaling = folded.pop(f"{prefix}.scaling")
        base = folded.pop(f"{prefix}.base.weight")
        folded[f"{prefix}.weight"] = base + (scaling * _combine(b.float(), a.float())).to(base.dtype)
        if f"{prefix}.base.bias" in folded:
            folded[f"{prefix}.bias"] = folded.pop(f"{prefix}.base.bias")
    return folded
