"""Static post-training int8 (``compress.scheme=int8_static``) through torchao's PT2E flow.

``torch.export`` captures the float model (batch dimension dynamic); torchao's
``X86InductorQuantizer`` annotates it (int8 per-channel weights, uint8 per-tensor
activations around Conv2d and Linear); ``prepare_pt2e`` folds BatchNorm into the
convolutions and, given the quantizer's QAT configuration, inserts fake quantisers (rather
than bare observers) whose observers are calibrated on training batches; ``convert_pt2e``
then folds the weights to int8 and the activation fake quantisers to quantize/dequantize pairs.

One calibrated graph gives both models: the converted copy is the int8 model, and the
calibrated graph itself, observers frozen, is the gradient model: the same quantisation
points and parameters, fake-quantised in float with straight-through gradients.
(``prepare_qat_pt2e`` would give the same, but it keeps BatchNorm unfolded and its pattern
matching took 10 s against 0.1 s for ``prepare_pt2e`` on the digits CNN here.)

The converted model runs in eager mode as quantize/dequantize ops around float kernels,
which reproduces int8 numerics but not int8 speed; int8 kernels come from compiling it
(``torchao.quantization.pt2e.lowering.lower_pt2e_quantized_to_x86``), which dq does not do.
The float weights the converted graph no longer reads are dropped, so its size on disk is
that of the int8 model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from dq.errors import DQUserError, first_line


@dataclass
class StaticInt8:
    """The converted int8 graph, the calibrated fake-quantised graph and how many weight
    tensors became int8."""

    model: nn.Module
    gradient_model: nn.Module
    int8_weights: int


def _drop_unused_state(graph_module: torch.fx.GraphModule) -> None:
    """Delete parameters and buffers the graph never reads (the float weights that convert
    replaced with int8 copies), so the state dict holds only what runs."""
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name in [n for n, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()] if n not in used]:
        owner_name, _, attr = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        delattr(owner, attr)


def quantize_static(model: nn.Module, calibration: torch.Tensor, batch_size: int) -> StaticInt8:
    """Static int8 of a float CPU ``model`` in eval mode, calibrated on ``calibration``
    inputs in batches of ``batch_size``.

    Raises:
        DQUserError: ``torch.export`` cannot capture the model, in one line.
    """
    from torchao.quantization.pt2e import allow_exported_model_train_eval, disable_observer
    from torchao.quantization.pt2e import move_exported_model_to_eval as to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    example = calibration[: min(len(calibration), batch_size)]
    batch = torch.export.Dim("batch")
    try:
        exported = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: batch},))
    except Exception as error:  # torch.export raises many kinds (UserError, Unsupported, ...)
        raise DQUserError(
            f"int8_static cannot export {type(model).__name__} with torch.export: {first_line(str(error))[:200]}"
        ) from None
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config(is_qat=True))
    fake = prepare_pt2e(exported.module(), quantizer)
    to_eval(fake)
    with torch.no_grad():
        for start in range(0, len(calibration), batch_size):
            fake(calibration[start : start + batch_size])
    fake.apply(disable_observer)
    int8 = convert_pt2e(copy.deepcopy(fake))
    _drop_unused_state(int8)
    for graph_module in (fake, int8):
        # .train() / .eval() then move the exported graph between modes (they return None).
        allow_exported_model_train_eval(graph_module)
        graph_module.eval()
    count = sum(1 for t in int8.state_dict().values() if t.dtype == torch.int8)
    return StaticInt8(model=int8, gradient_model=fake, int8_weights=count)
