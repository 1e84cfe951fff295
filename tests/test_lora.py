"""LoRA adapters: parameter counts, exact start, frozen base, merging, init_from, errors."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dq import models
from dq.config.optimizer import AdamConfig
from dq.data_records import DatasetMeta
from dq.engine.checkpoint import save_best
from dq.engine.optim import build_optimizer
from dq.errors import DQUserError
from dq.models.attention import AttentionConfig
from dq.models.cnn import CNNConfig
from dq.models.mlp import MLPConfig
from dq.models.rnn import RNNConfig
from dq.objectives.lora.config import LoRAConfig
from dq.objectives.lora.layer import LoRAConv1d, LoRAConv2d, LoRALayer, LoRALinear, apply_lora, merge_lora
from dq.objectives.lora.pretrained import load_pretrained
from dq.spec import to_spec

torch.set_num_threads(1)

CLASSES = tuple(str(i) for i in range(10))
METAS: dict[str, DatasetMeta] = {
    "digits": DatasetMeta("digits", "image", (1, 8, 8), 10, CLASSES, input_mean=(0.3,), input_std=(0.4,)),
    "mnist": DatasetMeta("mnist", "image", (1, 28, 28), 10, CLASSES, input_mean=(0.13,), input_std=(0.31,)),
    "series": DatasetMeta("gunpoint", "series", (1, 30), 2, ("gun", "point")),
    "tabular": DatasetMeta("adult", "tabular", (6,), 2, ("no", "yes"), feature_names=tuple("abcdef")),
    "text": DatasetMeta(
        "reviews", "text", (12,), 3, ("a", "b", "c"), vocab=tuple(f"t{i}" for i in range(40)), pad_index=0
    ),
}
SMALL: dict[str, Any] = {
    "mlp": MLPConfig(hidden=[32, 16], dropout=0.0),
    "cnn": CNNConfig(channels=[4, 8], hidden=16, dropout=0.0),
    "rnn": RNNConfig(hidden_size=8, embedding_dim=8, dropout=0.0),
    "attention": AttentionConfig(d_model=16, heads=2, layers=1, ff_dim=16, dropout=0.0, patch_size=4),
}


def batch(meta: DatasetMeta, n: int = 6, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if meta.modality == "text":
        ids = torch.randint(1, len(meta.vocab), (n, meta.input_shape[0]), generator=gen)
        ids[:, -3:] = meta.pad_index
        return ids
    if meta.modality == "image":
        return torch.rand(n, *meta.input_shape, generator=gen)
    return torch.randn(n, *meta.input_shape, generator=gen)


def build(name: str, data: str, seed: int = 0, **changes: Any) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(dataclasses.replace(SMALL[name], **changes), METAS[data])


def lora(**changes: Any) -> LoRAConfig:
    return dataclasses.replace(LoRAConfig(), **changes)


def adapters(model: nn.Module) -> list[LoRALayer]:
    return [m for m in model.modules() if isinstance(m, LoRALayer)]


def train_steps(model: nn.Module, meta: DatasetMeta, steps: int = 3) -> None:
    """A few AdamW steps with weight decay, the optimizer built as the runner builds it."""
    optimizer = build_optimizer(AdamConfig(lr=0.05, weight_decay=0.1, decoupled=True), model.parameters())
    x, y = batch(meta, n=16), torch.arange(16) % meta.num_classes
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


def randomize_adapters(model: nn.Module) -> None:
    """B ≠ 0, as after training, so that merging has something to fold."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for adapter in adapters(model):
            adapter.lora_B.weight.copy_(0.1 * torch.randn(adapter.lora_B.weight.shape, generator=gen))


# --------------------------------------------------------------------------- single layers
@pytest.mark.parametrize(
    ("base", "wrapper", "expected"),
    [
        (nn.Linear(10, 6), LoRALinear, 4 * (10 + 6)),
        (nn.Conv1d(2, 5, 7, stride=2, padding=3, dilation=1), LoRAConv1d, 4 * (2 * 7 + 5)),
        (nn.Conv2d(3, 8, 3, stride=2, padding=2, dilation=2, padding_mode="reflect"), LoRAConv2d, 4 * (3 * 3 * 3 + 8)),
        (nn.Conv2d(3, 8, (3, 5), padding=(1, 2), bias=False), LoRAConv2d, 4 * (3 * 3 * 5 + 8)),
    ],
)
def test_layer_adapter_counts_start_exact_and_merge(base: nn.Module, wrapper: type[LoRALayer], expected: int) -> None:
    torch.manual_seed(0)
    x = (
        torch.randn(2, 10)
        if isinstance(base, nn.Linear)
        else torch.randn(2, base.in_channels, *(9,) * (base.weight.dim() - 2))
    )
    reference = base(x).detach()
    layer = wrapper(copy.deepcopy(base), LoRAConfig(rank=4, alpha=8.0))
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == expected
    assert not any(p.requires_grad for p in layer.base.parameters())
    assert torch.equal(layer(x), reference)  # B = 0: exactly the base

    randomize_adapters(layer)
    adapted = layer(x).detach()
    assert not torch.allclose(adapted, reference)
    # The exposed weight is the folded one: the functional form agrees with forward.
    functional = (
        F.linear(x, layer.weight, layer.bias)
        if isinstance(base, nn.Linear)
        else layer.base._conv_forward(x, layer.weight, layer.bias)  # type: ignore[operator]
    )
    torch.testing.assert_close(functional, adapted, atol=1e-5, rtol=0)
    merged = merge_lora(layer)
    assert type(merged) is type(base)
    torch.testing.assert_close(merged(x), adapted, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- apply_lora
def test_mlp_trainable_counts_are_exact() -> None:
    model = build("mlp", "digits")  # Flatten 64 → 32 → 16 → head 10
    base_total, _ = models.count_parameters(model)
    summary = apply_lora(model, LoRAConfig(rank=4))
    assert summary.adapted == ["body.1", "body.4"]
    assert summary.trained == ["head.weight", "head.bias"]
    adapter_params = 4 * (64 + 32) + 4 * (32 + 16)
    assert summary.trainable == adapter_params + 16 * 10 + 10 == 746
    assert summary.total == base_total + adapter_params == 3354
    assert models.count_parameters(model) == (summary.total, summary.trainable)
    assert "746 of 3,354" in summary.describe()


def test_default_cnn_on_mnist_counts() -> None:
    torch.manual_seed(0)
    model = models.build(CNNConfig(), METAS["mnist"])  # the default conf/model/cnn.yaml
    summary = apply_lora(model, LoRAConfig(rank=4))
    assert summary.adapted == ["features.0", "features.4", "hidden.1"]
    conv1, conv2, hidden = 4 * (1 * 3 * 3 + 32), 4 * (32 * 3 * 3 + 64), 4 * (64 * 7 * 7 + 128)
    assert summary.trainable == conv1 + conv2 + hidden + 128 * 10 + 10 == 15_918
    assert summary.total == 421_738 + conv1 + conv2 + hidden == 436_366


FAMILIES = [
    ("mlp", "digits"),
    ("mlp", "tabular"),
    ("cnn", "digits"),
    ("cnn", "series"),
    ("rnn", "series"),
    ("rnn", "text"),
    ("attention", "digits"),
    ("attention", "text"),
    ("attention", "series"),
    ("attention", "tabular"),
]


@pytest.mark.parametrize(("name", "data"), FAMILIES)
def test_adapted_model_starts_as_its_base_and_adapters_learn(name: str, data: str) -> None:
    meta = METAS[data]
    model = build(name, data).eval()
    x = batch(meta)
    with torch.no_grad():
        reference = model(x)
    reference_train = copy.deepcopy(model).train()(x).detach()  # BatchNorm: batch statistics
    # train: [] adapts every adaptable layer, the head included.
    summary = apply_lora(model, LoRAConfig(rank=2, train=[]))
    assert summary.adapted and "head" in summary.adapted
    assert summary.trained == []
    with torch.no_grad():  # eval + no_grad: the transformer's fast path reads .weight
        assert torch.equal(model(x), reference)
    model.train()
    assert torch.equal(model(x), reference_train)  # dropout 0 in SMALL

    F.cross_entropy(model(x), torch.arange(len(x)) % meta.num_classes).backward()
    for adapter in adapters(model):
        assert adapter.lora_B.weight.grad is not None and adapter.lora_B.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_attention_out_proj_is_adapted_through_its_weight() -> None:
    model = build("attention", "text")
    summary = apply_lora(model, LoRAConfig(rank=2))
    assert summary.adapted == [
        "encoder.layers.0.self_attn.out_proj",
        "encoder.layers.0.linear1",
        "encoder.layers.0.linear2",
    ]
    # in_proj_weight is a raw parameter: frozen unless `train` names it.
    assert not model.encoder.layers[0].self_attn.in_proj_weight.requires_grad
    model = build("attention", "text")
    apply_lora(model, LoRAConfig(rank=2, train=["head", "*.in_proj_*", "cls"]))
    assert model.encoder.layers[0].self_attn.in_proj_weight.requires_grad
    assert model.cls.requires_grad and not model.position.requires_grad


@pytest.mark.parametrize(("name", "data"), [("mlp", "digits"), ("cnn", "digits"), ("attention", "text")])
def test_frozen_parameters_stay_bitwise_unchanged(name: str, data: str) -> None:
    model = build(name, data)
    apply_lora(model, LoRAConfig(rank=2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and len(frozen) < len(before)
    train_steps(model, METAS[data])
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in frozen)
    assert not torch.equal(after["head.weight"], before["head.weight"])
    assert all(not torch.equal(after[n], before[n]) for n in before if n.endswith("lora_B.weight"))


def test_recurrent_layers_are_frozen_unless_trained_by_pattern() -> None:
    model = build("rnn", "series")
    summary = apply_lora(model, LoRAConfig())
    assert summary.adapted == []  # the head is trained fully; an LSTM is never adapted
    assert summary.trained == ["head.weight", "head.bias"]
    assert not any(p.requires_grad for p in model.rnn.parameters())
    assert summary.trainable == 8 * 2 + 2

    model = build("rnn", "series")
    summary = apply_lora(model, LoRAConfig(train=["rnn", "head"]))
    assert all(p.requires_grad for p in model.rnn.parameters())
    assert summary.trainable == summary.total

    with pytest.raises(DQUserError, match=r"pattern 'rnn\*' matches no adaptable layer .*; adaptable: head$"):
        apply_lora(build("rnn", "series"), LoRAConfig(target=["rnn*"]))


def test_train_pattern_covers_children_which_are_then_not_adapted() -> None:
    model = build("cnn", "digits")
    summary = apply_lora(model, LoRAConfig(train=["hidden", "head"]))
    assert summary.adapted == ["features.0", "features.4"]
    assert summary.trained == ["hidden.1.weight", "hidden.1.bias", "head.weight", "head.bias"]
    # A pattern on a parameter keeps its layer unadapted too: never both trained and adapted.
    summary = apply_lora(build("cnn", "digits"), LoRAConfig(train=["head", "features.4.weight"]))
    assert summary.adapted == ["features.0", "hidden.1"]
    assert summary.trained == ["features.4.weight", "head.weight", "head.bias"]


def test_empty_target_freezes_by_name_only() -> None:
    model = build("mlp", "digits")
    summary = apply_lora(model, LoRAConfig(target=[], train=["body.4", "head"]))
    assert summary.adapted == [] and not adapters(model)
    assert summary.trainable == (32 * 16 + 16) + (16 * 10 + 10)


def test_unmatched_patterns_are_one_line_user_errors() -> None:
    with pytest.raises(DQUserError) as info:
        apply_lora(build("mlp", "digits"), LoRAConfig(target=["body.*", "encoder.*"]))
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "regularizer.lora.target pattern 'encoder.*' matches no adaptable layer (Linear, Conv1d, Conv2d); "
        "adaptable: body.1, body.4, head"
    )
    with pytest.raises(DQUserError, match=r"train pattern 'classifier' matches no module .*: normalize, body, head$"):
        apply_lora(build("mlp", "digits"), LoRAConfig(train=["classifier"]))


def test_applying_twice_is_refused() -> None:
    model = build("mlp", "digits")
    apply_lora(model, LoRAConfig())
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_lora(model, LoRAConfig())


def test_config_from_yaml_applies(make_cfg: Callable[..., Any]) -> None:
    spec = to_spec(make_cfg("dataset=digits", "model=mlp", "regularizer=[lora]", "regularizer.lora.rank=2"))
    cfg = spec.regularizer["lora"]
    assert isinstance(cfg, LoRAConfig) and cfg.rank == 2
    assert apply_lora(models.build(spec.model, METAS["digits"]), cfg).adapted == ["body.1", "body.4"]


# --------------------------------------------------------------------------- merging
@pytest.mark.parametrize(
    ("name", "data"), [("mlp", "digits"), ("cnn", "digits"), ("cnn", "series"), ("attention", "text")]
)
def test_merge_equals_adapted_and_gives_the_plain_architecture(name: str, data: str) -> None:
    meta = METAS[data]
    model = build(name, data, dropout=0.2)
    apply_lora(model, LoRAConfig(rank=3, dropout=0.3, train=[]))
    train_steps(model, meta, steps=2)
    randomize_adapters(model)
    model.eval()
    x = batch(meta)
    with torch.no_grad():
        adapted = model(x)
        merged = merge_lora(model)
        assert not adapters(merged)
        torch.testing.assert_close(merged(x), adapted, atol=1e-5, rtol=0)
        plain = build(name, data, seed=1, dropout=0.2).eval()
        plain.load_state_dict(merged.state_dict())  # same keys and shapes as an unadapted model
        torch.testing.assert_close(plain(x), adapted, atol=1e-5, rtol=0)


def test_adapted_checkpoint_reloads_into_a_rebuilt_adapted_model() -> None:
    # What load_run does: build, apply_lora, load best.pt.
    model = build("cnn", "digits")
    apply_lora(model, LoRAConfig(rank=2))
    train_steps(model, METAS["digits"])
    again = build("cnn", "digits", seed=5)
    apply_lora(again, LoRAConfig(rank=2))
    again.load_state_dict(model.state_dict())
    x = batch(METAS["digits"])
    assert torch.equal(again.eval()(x), model.eval()(x))


# --------------------------------------------------------------------------- init_from
def pretrained_run(
    tmp_path: Path, name: str, data: str, adapted: bool = False, **changes: Any
) -> tuple[Path, nn.Module]:
    model = build(name, data, **changes)
    if adapted:
        apply_lora(model, LoRAConfig(rank=2))
    train_steps(model, METAS[data])
    if adapted:
        randomize_adapters(model)
    run_dir = tmp_path / "pretrain"
    save_best(run_dir, {k: v.detach().clone() for k, v in model.state_dict().items()}, 3, "val/accuracy", 0.5)
    return run_dir, model.eval()


@pytest.mark.parametrize("adapted", [False, True], ids=["plain-run", "lora-run"])
def test_init_from_loads_a_finished_run(tmp_path: Path, adapted: bool) -> None:
    run_dir, trained = pretrained_run(tmp_path, "cnn", "digits", adapted=adapted)
    fresh = build("cnn", "digits", seed=3)
    info = load_pretrained(fresh, run_dir)
    assert info.fresh_head == [] and info.kept_normalize == ["normalize.mean", "normalize.std"]
    assert "features.1.running_mean" in info.loaded  # BatchNorm statistics come along
    x = batch(METAS["digits"])
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), trained(x), atol=1e-5, rtol=0)


def test_init_from_keeps_the_new_datas_normalisation(tmp_path: Path) -> None:
    run_dir, trained = pretrained_run(tmp_path, "mlp", "digits")
    meta = dataclasses.replace(METAS["digits"], input_mean=(0.5,), input_std=(0.25,))
    torch.manual_seed(3)
    fresh = models.build(SMALL["mlp"], meta)
    load_pretrained(fresh, run_dir)
    assert fresh.normalize.mean.tolist() == [0.5] and fresh.normalize.std.tolist() == [0.25]
    state = trained.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in fresh.state_dict().items() if not k.startswith("normalize."))


def test_init_from_keeps_a_fresh_head_for_another_class_count(tmp_path: Path) -> None:
    run_dir, trained = pretrained_run(tmp_path, "mlp", "digits")
    torch.manual_seed(3)
    fresh = models.build(SMALL["mlp"], dataclasses.replace(METAS["digits"], num_classes=3, class_names=("a", "b", "c")))
    head = copy.deepcopy(fresh.head.state_dict())
    info = load_pretrained(fresh, run_dir)
    assert info.fresh_head == ["head.weight", "head.bias"]
    assert "kept the fresh head (head.weight, head.bias)" in info.describe()
    assert all(torch.equal(v, head[k]) for k, v in fresh.head.state_dict().items())
    assert torch.equal(fresh.body[4].weight, trained.body[4].weight)


def test_init_from_mismatch_outside_the_head_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir, _ = pretrained_run(tmp_path, "mlp", "digits")
    with pytest.raises(DQUserError) as info:
        load_pretrained(build("mlp", "digits", hidden=[32, 8]), run_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"regularizer.lora.init_from={run_dir}: checkpoint shapes differ")
    assert "body.4.weight (16, 32) vs (8, 32)" in message and "head.weight" in message

    with pytest.raises(
        DQUserError, match=r"does not fit this model; missing: .*features\.0\.weight.*unexpected: .*body\.1\.weight"
    ):
        load_pretrained(build("cnn", "digits"), run_dir)


def test_init_from_without_best_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DQUserError) as info:
        load_pretrained(build("mlp", "digits"), tmp_path)
    assert str(info.value) == (
        f"regularizer.lora.init_from={tmp_path}: no checkpoints/best.pt; point it at a finished run directory"
    )
