"""int8 quantisation with torchao (dq.compress.quantize): accuracy kept within a point on
digits, smaller files that load with weights_only=True, a fake-quantised gradient model that
agrees with the int8 one, and one-line refusals of what torchao does not cover."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import compose_config
from dq import data, models
from dq.compress.quantize import Quantized, check_quantizable, load_quantized, quantize_model, save_quantized
from dq.config.compress import QuantizeConfig, QuantScheme
from dq.data_records import DatasetMeta, Split, Splits
from dq.errors import DQUserError

torch.set_num_threads(1)

CPU = torch.device("cpu")
QUANTIZE_SCHEMES = (QuantScheme.int8_dynamic, QuantScheme.int8_weight_only)


@pytest.fixture(scope="module")
def digits() -> Splits:
    return data.build(compose_config(["dataset=digits"], fast=False).dataset, seed=0)


def train(model_name: str, splits: Splits, epochs: int = 3) -> nn.Module:
    """A small model trained on digits for a few epochs of Adam (under a second on one core)."""
    torch.manual_seed(0)
    model = models.build(compose_config([f"model={model_name}"]).model, splits.meta)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = splits.train.x, splits.train.y
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(y)).split(64):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(digits: Splits) -> dict[str, nn.Module]:
    return {name: train(name, digits) for name in ("mlp", "cnn")}


def predict(model: nn.Module, split: Split) -> torch.Tensor:
    with torch.no_grad():
        return model(split.x).argmax(1)


def accuracy(model: nn.Module, split: Split) -> float:
    return float((predict(model, split) == split.y).float().mean())


def state_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def check_int8(float_model: nn.Module, q: Quantized, test: Split, tmp_path: Path, cfg: QuantizeConfig) -> None:
    """What every scheme promises: accuracy within 1 point, a smaller file that loads back
    to the same predictions, a gradient model that agrees with the int8 one and has gradients."""
    float_acc, int8_acc = accuracy(float_model, test), accuracy(q.model, test)
    assert float_acc > 0.9, f"the float model did not learn digits ({float_acc:.3f})"
    assert abs(int8_acc - float_acc) <= 0.01, f"int8 accuracy {int8_acc:.4f} vs float {float_acc:.4f}"

    path = tmp_path / "model_int8.pt"
    save_quantized(q, path)
    assert path.stat().st_size < 0.75 * state_bytes(float_model)
    loaded = load_quantized(path, float_model, cfg)
    assert torch.equal(predict(loaded, test), predict(q.model, test))

    agree = float((predict(q.gradient_model, test) == predict(q.model, test)).float().mean())
    assert agree >= 0.99, f"gradient model agrees with the int8 model on {agree:.4f} of test examples"
    x = test.x[:16].clone().requires_grad_(True)
    F.cross_entropy(q.gradient_model(x), test.y[:16]).backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("scheme", QUANTIZE_SCHEMES)
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_int8_keeps_accuracy_shrinks_and_has_a_gradient_model(
    model_name: str, scheme: QuantScheme, digits: Splits, trained: dict[str, nn.Module], tmp_path: Path
) -> None:
    float_model = trained[model_name]
    before = copy.deepcopy(float_model.state_dict())
    cfg = QuantizeConfig(scheme=scheme)
    q = quantize_model(float_model, cfg, digits, CPU)
    check_int8(float_model, q, digits.test, tmp_path, cfg)
    # The caller's float model is left as it was (the comparison needs it).
    assert all(torch.equal(before[k], v) for k, v in float_model.state_dict().items())


def test_note_says_what_stays_float(digits: Splits, trained: dict[str, nn.Module]) -> None:
    """torchao's int8 covers Linear layers only: the CNN's two convolutions stay float32."""
    q = quantize_model(trained["cnn"], QuantizeConfig(scheme=QuantScheme.int8_dynamic), digits, CPU)
    assert "2 of 4 weight layers int8" in q.note
    assert "features.0.weight, features.4.weight" in q.note
    assert "fake int8 quantisation" in q.note
    assert "\n" not in q.note


def test_lora_adapters_are_merged_before_quantising(digits: Splits, trained: dict[str, nn.Module]) -> None:
    from torchao.quantization import Int8Tensor

    from dq.objectives.lora.config import LoRAConfig
    from dq.objectives.lora.layer import LoRALayer, apply_lora

    adapted = copy.deepcopy(trained["mlp"])
    apply_lora(adapted, LoRAConfig(rank=2))
    torch.manual_seed(1)
    for layer in adapted.modules():
        if isinstance(layer, LoRALayer):  # B starts at zero: give the adapters an update to fold
            nn.init.normal_(layer.lora_B.weight, std=0.01)
    adapted.eval()
    q = quantize_model(adapted, QuantizeConfig(scheme=QuantScheme.int8_weight_only), digits, CPU)
    assert not any(isinstance(m, LoRALayer) for m in q.model.modules())
    assert sum(isinstance(p, Int8Tensor) for p in q.model.parameters()) == 3
    assert any(isinstance(m, LoRALayer) for m in adapted.modules()), "the caller's model was merged in place"
    agree = float((predict(q.model, digits.test) == predict(adapted, digits.test)).float().mean())
    assert agree >= 0.99


def test_torchao_int8_tensor_has_no_convolution() -> None:
    """Why convolutions stay float under int8_dynamic and int8_weight_only (docs/guides/compression.md says so):
    torchao's Int8Tensor has no aten.convolution. If a torchao release adds it, this fails
    and the schemes can cover Conv layers too."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    conv = nn.Sequential(nn.Conv2d(1, 4, 3))
    quantize_(conv, Int8WeightOnlyConfig(set_inductor_config=False), filter_fn=lambda m, _: isinstance(m, nn.Conv2d))
    with pytest.raises(NotImplementedError, match=r"aten\.convolution"):
        conv(torch.zeros(1, 1, 5, 5))


def test_int8_state_dict_loads_with_weights_only(digits: Splits, trained: dict[str, nn.Module], tmp_path: Path) -> None:
    """torchao registers Int8Tensor as a safe global: no add_safe_globals of ours is needed."""
    q = quantize_model(trained["mlp"], QuantizeConfig(scheme=QuantScheme.int8_weight_only), digits, CPU)
    path = tmp_path / "q.pt"
    save_quantized(q, path)
    state = torch.load(path, weights_only=True)
    from torchao.quantization import Int8Tensor

    assert isinstance(state["head.weight"], Int8Tensor)
    assert state["head.weight"].qdata.dtype == torch.int8


def test_load_of_a_foreign_file_is_one_line(digits: Splits, trained: dict[str, nn.Module], tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"something": torch.zeros(2)}, path)
    with pytest.raises(DQUserError) as caught:
        load_quantized(path, trained["mlp"], QuantizeConfig())
    message = str(caught.value)
    assert "is not an int8_dynamic model of MLP" in message and "\n" not in message


def test_recurrent_model_is_refused_in_one_line(digits: Splits) -> None:
    rnn = models.build(compose_config(["model=rnn"]).model, digits.meta)
    for scheme in QuantScheme:
        with pytest.raises(DQUserError) as caught:
            check_quantizable(rnn, QuantizeConfig(scheme=scheme), digits.meta)
        message = str(caught.value)
        assert message.startswith(f"cannot quantise ImageRowRNN on digits with compress.scheme={scheme.value}")
        assert "recurrent layers (LSTM/GRU)" in message and "int8_static quantises convolutions" in message
        assert "\n" not in message


def test_static_scheme_refuses_attention_text_and_other_devices(digits: Splits, trained: dict[str, nn.Module]) -> None:
    static = QuantizeConfig(scheme=QuantScheme.int8_static)
    attention = models.build(compose_config(["model=attention"]).model, digits.meta)
    check_quantizable(attention, QuantizeConfig(scheme=QuantScheme.int8_dynamic), digits.meta)
    with pytest.raises(DQUserError, match="no int8 path for its attention layers"):
        check_quantizable(attention, static, digits.meta)
    text = DatasetMeta("reviews", "text", (12,), 2, ("neg", "pos"), vocab=tuple(f"t{i}" for i in range(30)))
    token_mlp = models.build(compose_config(["model=mlp"]).model, text)
    check_quantizable(token_mlp, QuantizeConfig(scheme=QuantScheme.int8_weight_only), text)
    with pytest.raises(
        DQUserError, match=r"cannot quantise TokenMLP on reviews .* no int8 path for its token embeddings"
    ):
        check_quantizable(token_mlp, static, text)
    with pytest.raises(DQUserError, match=r"int8_static runs on CPU only .* got device cuda"):
        check_quantizable(trained["cnn"], static, digits.meta, device="cuda")
    check_quantizable(trained["cnn"], static, digits.meta, device="cpu")


@pytest.mark.slow
def test_static_int8_cnn(digits: Splits, trained: dict[str, nn.Module], tmp_path: Path) -> None:
    """PT2E static int8 of the CNN (about 10 s on a loaded core: export, calibration, save, load)."""
    cfg = QuantizeConfig(scheme=QuantScheme.int8_static, calibration_batches=4)
    q = quantize_model(trained["cnn"], cfg, digits, CPU)
    assert "4 of 4 weight layers int8" in q.note and "256 training examples" in q.note
    check_int8(trained["cnn"], q, digits.test, tmp_path, cfg)
