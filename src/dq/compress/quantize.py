"""Post-training int8 quantisation of a trained classifier with torchao (issue 12).

``compress.scheme`` picks one of three schemes:

- ``int8_dynamic``: ``torchao.quantization.quantize_`` with
  ``Int8DynamicActivationInt8WeightConfig``: weights int8, symmetric per output channel;
  activations quantised to int8 per token at run time. The activations are mapped
  asymmetrically, because torchao's QAT fake quantiser (the gradient model's) has no
  symmetric per-token mode; both sides then compute the same function.
- ``int8_weight_only``: ``Int8WeightOnlyConfig``: int8 weights, float activations.
- ``int8_static``: torchao's PT2E flow (``dq.compress.quantize_static``), which also
  covers convolutions, calibrated on the training split; CPU only.

What the two ``quantize_`` schemes cover: torchao's ``Int8Tensor`` implements
``aten.linear`` only, so ``nn.Linear`` layers become int8 and convolutions stay float32
(asking ``quantize_`` to include ``nn.Conv2d`` fails with NotImplementedError for
``aten.convolution``); an attention block's input and output projections stay float32
(torchao skips ``NonDynamicallyQuantizableLinear``); recurrent layers (LSTM, GRU) have no
int8 path, so a recurrent model is refused rather than "quantised" at its head only. LoRA
adapters are merged into their base layers first.

Gradient-based evaluation (PGD, attributions) cannot differentiate an int8 model; it uses
``Quantized.gradient_model``, the float model with fake quantisation (torchao's QAT fake
quantisers, straight-through rounding) of what the scheme quantises.

Saving: an int8 state dict of the ``quantize_`` schemes holds torchao ``Int8Tensor``
weights, which torchao registers with ``torch.serialization.add_safe_globals`` itself, so
it loads with ``weights_only=True`` once torchao is imported (checked in the tests). The
static model is an exported graph and is saved with ``torch.export.save``.
"""

from __future__ import annotations

import copy
import functools
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import torch
from torch import nn

from dq.config.compress import QuantizeConfig, QuantScheme
from dq.data_records import DatasetMeta, Splits
from dq.errors import DQUserError, first_line
from dq.objectives.lora.layer import merge_lora
from dq.rundir.read import load_checkpoint
from dq.rundir.write import atomic_write, save_torch

P = ParamSpec("P")
R = TypeVar("R")

# Examples per calibration batch of the static scheme (``calibration_batches`` of them).
CALIBRATION_BATCH_SIZE = 64

_SUPPORTED = (
    "int8_dynamic and int8_weight_only quantise nn.Linear layers (models mlp, cnn, attention; "
    "convolutions and attention projections stay float32), int8_static quantises convolutions and Linear "
    "layers on CPU (models cnn and mlp on image, tabular or series data)"
)


@dataclass
class Quantized:
    """A quantised model and the float stand-in that gradient-based measures use.

    Attributes:
        model: the int8 model, for predictions, latency and size on disk.
        gradient_model: the float model with fake quantisation, for attacks and attributions.
        note: one sentence for the report and ``compression.json``: what was quantised.
        scheme: the scheme that made it (``save_quantized`` needs it).
        example: a few training inputs; the static model is re-exported with them to be saved.
    """

    model: nn.Module
    gradient_model: nn.Module
    note: str
    scheme: QuantScheme = QuantScheme.int8_dynamic
    example: torch.Tensor | None = field(default=None, repr=False)


def _quiet_pytree(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with torch's pytree logger quieted: torchao 0.18 registers its enums
    with torch's pytree as its modules are imported, and torch 2.14 logs a deprecation
    warning for each one, lines of noise on every dq-compress run that say nothing to its user."""

    @functools.wraps(function)
    def quietly(*args: P.args, **kwargs: P.kwargs) -> R:
        logger = logging.getLogger("torch.utils._pytree")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            return function(*args, **kwargs)
        finally:
            logger.setLevel(level)

    return quietly


def _blockers(model: nn.Module, scheme: QuantScheme) -> list[str]:
    """The layer kinds in ``model`` that ``scheme`` cannot quantise faithfully."""
    kinds: dict[type[nn.Module], str] = {nn.RNNBase: "recurrent layers (LSTM/GRU)"}
    if scheme is QuantScheme.int8_static:
        kinds |= {nn.MultiheadAttention: "attention layers", nn.Embedding: "token embeddings"}
    found = {label for module in model.modules() for kind, label in kinds.items() if isinstance(module, kind)}
    return sorted(found)


def check_quantizable(
    model: nn.Module, cfg: QuantizeConfig, meta: DatasetMeta, device: torch.device | str | None = None
) -> None:
    """Refuse, in one line, a model or device that ``cfg.scheme`` does not support.

    Raises:
        DQUserError: what was wrong (the model's layers, the data, the device) and what is supported.
    """
    scheme = QuantScheme(cfg.scheme)
    what = f"cannot quantise {type(model).__name__} on {meta.name} with compress.scheme={scheme.value}"
    blockers = _blockers(model, scheme)
    if blockers:
        raise DQUserError(f"{what}: torchao has no int8 path for its {' and '.join(blockers)}; {_SUPPORTED}")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise DQUserError(f"{what}: it has no nn.Linear layer; {_SUPPORTED}")
    # Token models (every dq model on text) were refused above for their embeddings.
    if scheme is QuantScheme.int8_static and device is not None and torch.device(device).type != "cpu":
        raise DQUserError(
            f"{what}: int8_static runs on CPU only (torchao's X86 inductor quantizer), got device "
            f"{torch.device(device)}; int8_dynamic and int8_weight_only run there"
        )


def _torchao_config(scheme: QuantScheme) -> object:
    """The torchao ``quantize_`` config of a dynamic or weight-only scheme.

    ``set_inductor_config=False``: dq does not compile these models, and torchao would
    otherwise change torch._inductor's process-wide settings.
    """
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, MappingType

    if scheme is QuantScheme.int8_dynamic:
        return Int8DynamicActivationInt8WeightConfig(act_mapping_type=MappingType.ASYMMETRIC, set_inductor_config=False)
    return Int8WeightOnlyConfig(set_inductor_config=False)


def _fake_quantized(model: nn.Module, scheme: QuantScheme) -> nn.Module:
    """``model`` (a copy) with each ``nn.Linear`` swapped for torchao's ``FakeQuantizedLinear``:
    int8 symmetric per-channel weights and, for ``int8_dynamic``, int8 asymmetric per-token
    activations, as the int8 model computes them, with straight-through gradients."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    weight = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    activation = (
        IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)
        if scheme is QuantScheme.int8_dynamic
        else None
    )
    fake = copy.deepcopy(model)
    quantize_(fake, QATConfig(activation_config=activation, weight_config=weight, step="prepare"))
    return fake.eval()


def _weight_layers(model: nn.Module) -> list[str]:
    """Names of the weight matrices and kernels (parameters with ≥ 2 dims) of ``model``."""
    return [name for name, p in model.named_parameters() if p.dim() >= 2]


@_quiet_pytree
def quantize_model(model: nn.Module, cfg: QuantizeConfig, splits: Splits, device: torch.device) -> Quantized:
    """Quantise a trained float ``model`` (left untouched) with ``cfg.scheme``.

    ``int8_static`` calibrates on the first ``cfg.calibration_batches`` batches of
    ``CALIBRATION_BATCH_SIZE`` training examples; the other schemes need no data.

    Raises:
        DQUserError: the model or device is not supported (``check_quantizable``), or the
            static scheme cannot export the model.
    """
    scheme = QuantScheme(cfg.scheme)
    check_quantizable(model, cfg, splits.meta, device)
    float_model = merge_lora(copy.deepcopy(model)).eval()
    if scheme is QuantScheme.int8_static:
        from dq.compress.quantize_static import quantize_static

        calibration = splits.train.batch(slice(0, cfg.calibration_batches * CALIBRATION_BATCH_SIZE)).x
        static = quantize_static(float_model.cpu(), calibration.cpu(), CALIBRATION_BATCH_SIZE)
        total = len(_weight_layers(float_model))
        note = (
            f"int8_static (torchao PT2E, X86 inductor quantizer, calibrated on {len(calibration)} training "
            f"examples): {static.int8_weights} of {total} weight layers int8 with int8 activations between them, "
            "run on CPU as quantize/dequantize graph ops; attacks and attributions use the float model with "
            "fake quantisation at the same points"
        )
        return Quantized(static.model, static.gradient_model, note, scheme, example=calibration[:2].clone())

    from torchao.quantization import Int8Tensor, quantize_

    float_model = float_model.to(device)
    int8 = copy.deepcopy(float_model)
    quantize_(int8, _torchao_config(scheme))
    names = _weight_layers(float_model)
    done = [name for name, p in int8.named_parameters() if isinstance(p, Int8Tensor)]
    kept = [name for name in names if name not in done]
    acts = "int8 activations per token" if scheme is QuantScheme.int8_dynamic else "float32 activations"
    note = (
        f"{scheme.value} (torchao quantize_): {len(done)} of {len(names)} weight layers int8 (the Linear layers) "
        f"with {acts}"
        + (f", {len(kept)} stay float32 ({', '.join(kept)})" if kept else "")
        + "; attacks and attributions use the float model with fake int8 quantisation of the same layers"
    )
    return Quantized(int8.eval(), _fake_quantized(float_model, scheme), note, scheme)


def save_quantized(q: Quantized, path: Path) -> None:
    """Write the int8 model atomically: a state dict (``torch.save``) for the ``quantize_``
    schemes, an exported program (``torch.export.save``) for ``int8_static``."""
    path = Path(path)
    if q.scheme is not QuantScheme.int8_static:
        save_torch(path, q.model.state_dict())
        return
    if q.example is None:
        raise ValueError("an int8_static Quantized needs its example inputs to be saved")
    batch = torch.export.Dim("batch")
    program = torch.export.export(q.model, (q.example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()  # torch.export.save wants a buffer or a name ending in .pt2
    torch.export.save(program, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


@_quiet_pytree
def load_quantized(path: Path, model: nn.Module, cfg: QuantizeConfig) -> nn.Module:
    """The int8 model saved by ``save_quantized``, on CPU, in eval mode.

    ``model`` is a float model of the same architecture (built from the run's config; its
    weights are replaced): the ``quantize_`` schemes load their int8 state dict into it,
    with ``weights_only=True``. ``int8_static`` ignores it and loads the exported program.

    Raises:
        DQUserError: the file is missing or is not such a model, in one line.
    """
    from torchao.quantization import quantize_  # registers Int8Tensor as a safe global for weights_only

    scheme = QuantScheme(cfg.scheme)
    path = Path(path)
    try:
        if scheme is QuantScheme.int8_static:
            from torchao.quantization.pt2e import allow_exported_model_train_eval

            loaded = torch.export.load(io.BytesIO(path.read_bytes())).module()
            allow_exported_model_train_eval(loaded)
            loaded.eval()  # returns None once allowed
            return loaded
        state = load_checkpoint(path)
        skeleton = merge_lora(copy.deepcopy(model)).cpu()
        quantize_(skeleton, _torchao_config(scheme))
        skeleton.load_state_dict(state, assign=True)
        return skeleton.eval()
    except DQUserError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, ...
        raise DQUserError(
            f"{path} is not an {scheme.value} model of {type(model).__name__}: {first_line(str(error))[:200]}"
        ) from None
