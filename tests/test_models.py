"""Models: the support matrix, shapes and gradients, padding, normalisation, determinism."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dq import models
from dq.config import config_dir
from dq.config.validation import validate_tree
from dq.data_records import DatasetMeta
from dq.errors import DQUserError
from dq.models.attention import AttentionConfig
from dq.models.cnn import CNNConfig
from dq.models.layers import Normalize
from dq.models.mlp import MLPConfig
from dq.models.preact_resnet18 import PreActResNetConfig
from dq.models.rnn import RecurrentCell, RNNConfig
from dq.models.torchvision import TorchvisionConfig
from dq.models.wide_resnet import WideResNetConfig
from dq.spec import register_schemas, to_spec

torch.set_num_threads(1)

CLASSES = tuple(str(i) for i in range(10))
VOCAB = tuple(f"tok{i}" for i in range(50))

METAS: dict[str, DatasetMeta] = {
    "digits": DatasetMeta("digits", "image", (1, 8, 8), 10, CLASSES, input_mean=(0.3,), input_std=(0.4,)),
    "mnist": DatasetMeta("mnist", "image", (1, 28, 28), 10, CLASSES, input_mean=(0.13,), input_std=(0.31,)),
    "cifar": DatasetMeta(
        "cifar", "image", (3, 32, 32), 10, CLASSES, input_mean=(0.49, 0.48, 0.45), input_std=(0.25, 0.24, 0.26)
    ),
    "tabular": DatasetMeta(
        "adult", "tabular", (12,), 2, ("no", "yes"), feature_names=tuple(f"f{i}" for i in range(12))
    ),
    "text": DatasetMeta("reviews", "text", (16,), 3, ("a", "b", "c"), vocab=VOCAB, pad_index=0),
    "series": DatasetMeta("gunpoint", "series", (1, 150), 2, ("gun", "point")),
}
CONFIGS: dict[str, Any] = {
    "mlp": MLPConfig(),
    "cnn": CNNConfig(),
    "rnn": RNNConfig(),
    "attention": AttentionConfig(),
    # The standard vision models, narrow (their full sizes: test_vision_models.py's counts).
    "preact_resnet18": PreActResNetConfig(width=4),
    "wide_resnet": WideResNetConfig(depth=10, widen_factor=1),
    "torchvision": TorchvisionConfig(arch="mobilenet_v3_small"),
}
MATRIX: dict[str, set[str]] = {
    "mlp": {"image", "tabular", "series", "text"},
    "cnn": {"image", "series", "text"},
    "rnn": {"text", "series", "image"},
    "attention": {"image", "text", "series", "tabular"},
    "text_encoder": {"text"},  # pretrained: its own tests (tests/test_text_encoder.py) build it on its tokenizer's ids
    "preact_resnet18": {"image"},
    "wide_resnet": {"image"},
    "torchvision": {"image"},
}
SUPPORTED = [(m, d) for m in CONFIGS for d, meta in METAS.items() if meta.modality in MATRIX[m]]
UNSUPPORTED = sorted({(m, meta.modality) for m in CONFIGS for meta in METAS.values() if meta.modality not in MATRIX[m]})


def batch(meta: DatasetMeta, n: int = 4, seed: int = 1) -> torch.Tensor:
    """A valid input batch for ``meta``: pixels in [0, 1], standardised floats, or right-padded ids."""
    gen = torch.Generator().manual_seed(seed)
    if meta.modality == "text":
        length = meta.input_shape[0]
        ids = torch.randint(1, len(meta.vocab), (n, length), generator=gen)
        keep = torch.arange(length) < torch.randint(1, length + 1, (n, 1), generator=gen)
        return torch.where(keep, ids, meta.pad_index)
    if meta.modality == "image":
        return torch.rand(n, *meta.input_shape, generator=gen)
    return torch.randn(n, *meta.input_shape, generator=gen)


def by_modality(modality: str) -> DatasetMeta:
    return next(meta for meta in METAS.values() if meta.modality == modality)


def normalizers(model: nn.Module) -> list[Normalize]:
    return [m for m in model.modules() if isinstance(m, Normalize)]


# --------------------------------------------------------------------------- support matrix
def test_supported_modalities_follow_the_matrix() -> None:
    assert set(models.model_names()) == set(MATRIX)
    for name, modalities in MATRIX.items():
        assert set(models.supported_modalities(name)) == modalities


@pytest.mark.parametrize(("name", "modality"), UNSUPPORTED)
def test_unsupported_pair_is_one_line_user_error(name: str, modality: str) -> None:
    meta = by_modality(modality)
    with pytest.raises(DQUserError) as info:
        models.build(CONFIGS[name], meta)
    message = str(info.value)
    assert "\n" not in message
    allowed = sorted(m for m in MATRIX if modality in MATRIX[m])
    assert message.startswith(f"model {name} does not support {modality} data (dataset {meta.name})")
    assert message.endswith(f"models for {modality} data: {', '.join(allowed)}")


def test_unknown_model_name_lists_the_choices() -> None:
    with pytest.raises(
        DQUserError,
        match=r"unknown model 'resnet'; allowed: attention, cnn, mlp, preact_resnet18, rnn, text_encoder, torchvision, wide_resnet",
    ):
        models.build(dataclasses.replace(MLPConfig(), name="resnet"), METAS["tabular"])
    with pytest.raises(DQUserError, match="unknown model"):
        models.supported_modalities("resnet")


def test_meta_with_wrong_shape_is_a_user_error() -> None:
    flat_image = dataclasses.replace(METAS["digits"], input_shape=(64,))
    for name in ("mlp", "cnn", "rnn", "attention", "preact_resnet18", "wide_resnet", "torchvision"):
        with pytest.raises(DQUserError, match=r"input_shape \[C, H, W\]"):
            models.build(CONFIGS[name], flat_image)
    with pytest.raises(DQUserError, match="vocab"):
        models.build(RNNConfig(), dataclasses.replace(METAS["text"], vocab=()))


# --------------------------------------------------------------------------- every supported pair
@pytest.mark.parametrize(("name", "data"), SUPPORTED)
def test_forward_backward_and_deterministic_init(name: str, data: str) -> None:
    meta = METAS[data]
    torch.manual_seed(0)
    model = models.build(CONFIGS[name], meta)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # before BatchNorm stats move
    x = batch(meta)
    logits = model(x)
    assert logits.shape == (4, meta.num_classes)
    assert torch.isfinite(logits).all()

    F.cross_entropy(logits, torch.arange(4) % meta.num_classes).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    torch.manual_seed(0)
    again = models.build(CONFIGS[name], meta).state_dict()
    torch.manual_seed(1)
    other = models.build(CONFIGS[name], meta).state_dict()
    assert state.keys() == again.keys()
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert any(not torch.equal(state[k], other[k]) for k in state if state[k].is_floating_point())
    # Images are normalised inside the model; the other modalities arrive standardised.
    assert len(normalizers(model)) == (1 if meta.modality == "image" else 0)


# --------------------------------------------------------------------------- text
TEXT_CONFIGS = [
    pytest.param(RNNConfig(cell=RecurrentCell.lstm), id="lstm"),
    pytest.param(RNNConfig(cell=RecurrentCell.gru), id="gru"),
    pytest.param(RNNConfig(cell=RecurrentCell.lstm, bidirectional=True), id="bilstm"),
    pytest.param(RNNConfig(cell=RecurrentCell.gru, bidirectional=True, num_layers=2), id="bigru-2layers"),
    pytest.param(AttentionConfig(), id="attention"),
    pytest.param(MLPConfig(), id="fasttext-mlp"),
    pytest.param(MLPConfig(hidden=[]), id="fasttext-linear"),
    pytest.param(CNNConfig(), id="kim-cnn"),
    pytest.param(CNNConfig(filter_widths=[1, 7], filters=5), id="kim-cnn-1-7"),
]


@pytest.mark.parametrize("cfg", TEXT_CONFIGS)
def test_text_padding_is_ignored(cfg: Any) -> None:
    # pad_index 1 (not 0) catches a hard-coded padding id.
    meta = dataclasses.replace(METAS["text"], input_shape=(24,), pad_index=1)
    torch.manual_seed(0)
    model = models.build(cfg, meta).eval()
    sentences = [[5, 9, 12], [7, 3, 3, 8, 20, 31, 2], [4] * 10, [11]]

    def padded(length: int) -> torch.Tensor:
        return torch.tensor([s + [meta.pad_index] * (length - len(s)) for s in sentences])

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        short, long = model(padded(10)), model(padded(20))
    torch.testing.assert_close(short, long, atol=1e-5, rtol=0)
    assert not torch.allclose(short[0], short[1])  # the sentences do matter


@pytest.mark.parametrize("name", ["rnn", "attention", "mlp", "cnn"])
def test_token_models_expose_embedding_for_captum(name: str) -> None:
    from captum.attr import LayerIntegratedGradients

    meta = dataclasses.replace(METAS["text"], pad_index=3)
    model = models.build(CONFIGS[name], meta)
    assert isinstance(model.embedding, nn.Embedding)
    assert model.embedding.padding_idx == 3
    assert model.embedding.num_embeddings == len(VOCAB)
    x = batch(meta, n=2)
    lig = LayerIntegratedGradients(model.train(), model.embedding)
    attributions = lig.attribute(x, baselines=torch.full_like(x, 3), target=0, n_steps=4)
    assert attributions.shape == (*x.shape, model.embedding.embedding_dim)


def text_meta(pad_index: int = 1) -> DatasetMeta:
    return dataclasses.replace(METAS["text"], input_shape=(24,), pad_index=pad_index)


def head_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``model.head`` sees for ``x`` (eval mode, no gradient)."""
    seen: list[torch.Tensor] = []
    handle = model.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    ("cfg", "features"), [(MLPConfig(hidden=[7, 5]), 5), (CNNConfig(filter_widths=[2, 3], filters=6), 12)]
)
def test_mlp_and_cnn_on_text_output_shapes(cfg: Any, features: int) -> None:
    meta = text_meta()
    model = models.build(cfg, meta).eval()
    x = batch(meta, n=5)
    assert model(x).shape == (5, meta.num_classes)
    assert head_input(model, x).shape == (5, features)
    assert model.embedding(x).shape == (5, 24, cfg.embedding_dim)


def test_fasttext_mlp_averages_the_real_tokens() -> None:
    meta = text_meta()
    torch.manual_seed(0)
    model = models.build(MLPConfig(hidden=[8], embedding_dim=6), meta).eval()
    x = torch.tensor([[5, 9, 12, 1, 1], [7, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    weight = model.embedding.weight.detach()
    expected = torch.stack([weight[[5, 9, 12]].mean(0), weight[7], torch.zeros(6)])
    torch.testing.assert_close(model.body(expected), head_input(model, x), rtol=0, atol=1e-6)
    # Whatever stands at a pad position (an explainer's substitute embedding) is masked out.
    noise = torch.randn(3, 5, 6)
    noise[x != 1] = 0
    hook = model.embedding.register_forward_hook(lambda _m, _i, out: out + noise)
    with torch.no_grad():
        noisy = model(x)
    hook.remove()
    with torch.no_grad():
        torch.testing.assert_close(noisy, model(x), rtol=0, atol=1e-6)


def test_kim_pooling_ignores_padding_windows() -> None:
    # Biases of 5 and negative weights on positive embeddings: every window over a real
    # token scores below 5, a window of padding alone would score exactly relu(5) = 5.
    meta = text_meta()
    torch.manual_seed(0)
    model = models.build(CNNConfig(embedding_dim=4, filter_widths=[2, 3], filters=3), meta).eval()
    with torch.no_grad():
        model.embedding.weight.abs_()
        model.embedding.weight[meta.pad_index] = 0
        for ngram in model.ngrams:
            ngram.conv.weight.copy_(-ngram.conv.weight.abs())
            ngram.conv.bias.fill_(5.0)
    sentences = [[5, 9, 12, 20], [7]]
    x = torch.tensor([s + [meta.pad_index] * (10 - len(s)) for s in sentences])
    expected = []
    for sentence in sentences:
        embedded = model.embedding.weight.detach()[sentence].T.unsqueeze(0)  # [1, D, n], no padding at all
        expected.append(
            torch.cat(
                [
                    F.relu(F.conv1d(embedded, g.conv.weight, g.conv.bias, padding=g.width - 1)).amax(-1)
                    for g in model.ngrams
                ],
                dim=1,
            )
        )
    expected_t = torch.cat(expected)
    assert (expected_t < 5.0).all() and (expected_t > 0).any()
    torch.testing.assert_close(head_input(model, x), expected_t, rtol=0, atol=1e-6)


def test_kim_cnn_takes_texts_shorter_than_its_widest_filter() -> None:
    meta = text_meta()
    torch.manual_seed(0)
    model = models.build(CNNConfig(filter_widths=[3, 4, 5]), meta).eval()
    one_token = torch.tensor([[11]])
    with torch.no_grad():
        alone = model(one_token)
        padded = model(torch.tensor([[11] + [meta.pad_index] * 9]))
        two = model(torch.tensor([[11, 4]]))
        empty = model(torch.full((1, 3), meta.pad_index))
    assert alone.shape == (1, meta.num_classes) and torch.isfinite(alone).all()
    torch.testing.assert_close(alone, padded, rtol=0, atol=1e-6)
    assert not torch.allclose(alone, two)
    # No token, no window: every pooled feature is 0 and only the classifier's bias is left.
    torch.testing.assert_close(empty[0], model.head.bias.detach(), rtol=0, atol=0)


def test_text_mlp_and_cnn_parameter_counts() -> None:
    meta = METAS["text"]  # 50 tokens, 3 classes
    mlp = models.build(MLPConfig(hidden=[5], embedding_dim=4), meta)
    assert models.count_parameters(mlp) == (50 * 4 + (4 * 5 + 5) + (5 * 3 + 3),) * 2  # 243
    cnn = models.build(CNNConfig(embedding_dim=4, filter_widths=[2, 3], filters=6), meta)
    assert models.count_parameters(cnn) == (50 * 4 + (4 * 2 * 6 + 6) + (4 * 3 * 6 + 6) + (12 * 3 + 3),) * 2  # 371


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MLPConfig(embedding_dim=0), "model.embedding_dim must be > 0, got 0"),
        (lambda: CNNConfig(embedding_dim=-2), "model.embedding_dim must be > 0, got -2"),
        (lambda: CNNConfig(filters=0), "model.filters must be > 0, got 0"),
        (
            lambda: CNNConfig(filter_widths=[]),
            r"model.filter_widths must be a non-empty list of positive widths, got \[\]",
        ),
        (lambda: CNNConfig(filter_widths=[3, 0]), r"positive widths, got \[3, 0\]"),
    ],
)
def test_text_config_ranges(make: Any, message: str) -> None:
    with pytest.raises(DQUserError, match=message):
        validate_tree(make(), "model")


def test_attention_rejects_text_longer_than_its_positions() -> None:
    model = models.build(AttentionConfig(), METAS["text"])
    with pytest.raises(ValueError, match="at most 16"):
        model(torch.ones(2, 17, dtype=torch.long))


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn", "attention"])
def test_normalize_uses_meta_statistics(name: str) -> None:
    meta = dataclasses.replace(METAS["digits"], input_mean=(0.5,), input_std=(0.25,))
    identity = dataclasses.replace(meta, input_mean=(0.0,), input_std=(1.0,))
    torch.manual_seed(0)
    model = models.build(CONFIGS[name], meta).eval()
    torch.manual_seed(0)
    plain = models.build(CONFIGS[name], identity).eval()
    x = batch(meta)

    (norm,) = normalizers(model)
    torch.testing.assert_close(norm(x), (x - 0.5) / 0.25, rtol=0, atol=0)
    assert {"mean", "std"} <= {k.rsplit(".", 1)[-1] for k in model.state_dict()}  # travels with checkpoints
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain((x - 0.5) / 0.25))


def test_normalize_is_per_channel() -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    norm = Normalize(mean, std, channels=3)
    x = torch.rand(2, 3, 4, 4)
    expected = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    torch.testing.assert_close(norm(x), expected)
    with pytest.raises(DQUserError, match="2 values for 3 input channels"):
        Normalize((0.1, 0.2), (1.0, 1.0), channels=3)
    with pytest.raises(DQUserError, match="input_std must be > 0"):
        Normalize((0.1,), (0.0,), channels=1)


@pytest.mark.parametrize(("patch", "tokens"), [(4, 49), (5, 36), (32, 1)])
def test_attention_image_patch_sizes_that_do_not_divide(patch: int, tokens: int) -> None:
    model = models.build(AttentionConfig(patch_size=patch), METAS["mnist"])
    assert model.max_tokens == tokens
    assert model(batch(METAS["mnist"], n=2)).shape == (2, 10)


def test_attention_series_patch_that_does_not_divide() -> None:
    model = models.build(AttentionConfig(series_patch=7), METAS["series"])
    assert model.max_tokens == 22  # ceil(150 / 7)
    assert model(batch(METAS["series"], n=2)).shape == (2, 2)


def test_cnn_pooling_stops_at_size_one() -> None:
    cfg = CNNConfig(channels=[8, 8, 8, 8, 8], batch_norm=False)
    for data in ("digits", "series"):
        model = models.build(cfg, METAS[data])
        assert model(batch(METAS[data], n=2)).shape == (2, METAS[data].num_classes)


# --------------------------------------------------------------------------- misc
def test_rnn_cell_picks_the_module_type() -> None:
    for data in ("text", "series", "mnist"):
        lstm = models.build(RNNConfig(cell=RecurrentCell.lstm), METAS[data])
        gru = models.build(RNNConfig(cell=RecurrentCell.gru), METAS[data])
        assert type(lstm.rnn) is nn.LSTM
        assert type(gru.rnn) is nn.GRU


def test_count_parameters_separates_frozen() -> None:
    model = models.build(MLPConfig(hidden=[5]), METAS["tabular"])  # 12*5+5 + 5*2+2
    assert models.count_parameters(model) == (77, 77)
    model.body[1].requires_grad_(False)
    assert models.count_parameters(model) == (77, 12)


@pytest.mark.parametrize(("name", "data"), SUPPORTED)
def test_every_model_classifies_with_a_linear_head(name: str, data: str) -> None:
    # `regularizer.lora.train: [head]` relies on this name in every model.
    meta = METAS[data]
    model = models.build(CONFIGS[name], meta)
    assert isinstance(model.head, nn.Linear)
    assert model.head.out_features == meta.num_classes
    seen: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out))
    logits = model.eval()(batch(meta))
    assert len(seen) == 1 and seen[0] is logits  # the head's output is the model's output


def test_yaml_choices_compose_and_build() -> None:
    from hydra import compose, initialize_config_dir

    register_schemas()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for name, default in CONFIGS.items():
            spec_model = to_spec(compose("config", overrides=[f"model={name}"])).model
            assert spec_model == type(default)()  # the yaml gives the schema's defaults
            meta = next(METAS[d] for m, d in SUPPORTED if m == name)
            assert models.build(spec_model, meta)(batch(meta, n=2)).shape == (2, meta.num_classes)
