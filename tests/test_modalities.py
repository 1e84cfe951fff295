"""One home per modality (dq.modalities): every modality name a dataset can carry has one
object, attacks and explanations perturb text through the same embedding hook, the
attack's mask and AutoAttack's fixed columns come from one place, and what a model can do
is what it declared where it registered."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest
import torch
from torch import nn

from dq import models
from dq.attacks.autoattack import BoxMap
from dq.attacks.spaces import EmbeddingSpace, InputSpace, attack_space
from dq.compress.prune import check_prunable
from dq.config.compress import PruneConfig, PruneKind
from dq.config.explain import Baseline
from dq.data_records import DatasetMeta, ModalityName
from dq.errors import DQUserError
from dq.explain.space import EmbeddingForward
from dq.modalities import MODALITIES, Picture, modality_of
from dq.modalities.text import embedding_layer
from dq.models.registry import capabilities, capable
from dq.models.rnn import RNNConfig

TEXT = DatasetMeta(
    name="toy_text",
    modality="text",
    input_shape=(6,),
    num_classes=2,
    class_names=("a", "b"),
    vocab=("<pad>", "<unk>", "x", "y", "z"),
    pad_index=0,
)
TABLE = DatasetMeta(
    name="toy_table",
    modality="tabular",
    input_shape=(5,),
    num_classes=2,
    class_names=("a", "b"),
    continuous_columns=(0, 2),
)
IMAGE = DatasetMeta(
    name="toy_image", modality="image", input_shape=(1, 8, 8), num_classes=2, class_names=("a", "b"), valid_range=(0, 1)
)


def test_every_modality_name_a_dataset_can_carry_has_one_object() -> None:
    assert MODALITIES.names() == sorted(get_args(ModalityName))
    for name in MODALITIES.names():
        modality = MODALITIES.get(name).value
        assert modality.name == name
        assert isinstance(modality.picture, Picture) and Baseline.zeros in modality.baselines
    assert len({MODALITIES.get(name).value.picture for name in MODALITIES.names()}) == 4


def test_an_unknown_modality_is_refused_in_one_line_naming_the_known_ones() -> None:
    with pytest.raises(DQUserError, match=r"^unknown modality 'audio'; allowed: image, series, tabular, text$"):
        modality_of(DatasetMeta(name="toy", modality="audio", input_shape=(4,), num_classes=2, class_names=("a", "b")))


def test_the_attack_and_the_explanation_perturb_text_through_the_same_embedding_hook() -> None:
    """An attack's ``embedding + delta`` and an explanation fed ``embedding + delta`` give
    the same logits: one hook, two uses."""
    torch.manual_seed(0)
    model = models.build(RNNConfig(hidden_size=8, embedding_dim=4, dropout=0.0), TEXT).eval()
    ids = torch.tensor([[2, 3, 4, 0, 0, 0], [4, 4, 2, 3, 2, 0]])
    space = attack_space(TEXT)
    assert isinstance(space, EmbeddingSpace)
    clean = space.point(model, ids)
    delta = 0.3 * torch.randn_like(clean) * space.mask(ids)
    with torch.no_grad():
        attacked = space.forward(model, ids, delta)
        explained = EmbeddingForward(model)(clean + delta, ids)
        plain = model(ids)
    assert torch.equal(attacked, explained)
    assert not torch.allclose(attacked, plain)  # the perturbation reached the model
    with torch.no_grad():
        assert torch.equal(space.forward(model, ids, torch.zeros_like(clean)), plain)  # the hook is removed after


def test_a_model_without_an_embedding_is_refused_for_both_uses_in_one_line() -> None:
    for purpose in ("an attack", "an explanation"):
        with pytest.raises(DQUserError, match=rf"^{purpose} on text perturbs the output of model.embedding .*Linear"):
            embedding_layer(nn.Linear(3, 2), purpose)


def test_the_attack_mask_and_autoattacks_fixed_columns_are_one_answer() -> None:
    tabular = modality_of(TABLE)
    mask, fixed = tabular.attack_mask(TABLE), tabular.fixed_inputs(TABLE)
    assert mask.tolist() == [[1, 0, 1, 0, 0]]
    assert torch.equal(fixed, mask == 0)
    space = attack_space(TABLE)
    assert isinstance(space, InputSpace) and space.bounds is None
    box = BoxMap.for_data(nn.Identity(), torch.randn(4, 5), TABLE, eps=0.1)
    assert torch.equal(box.fixed, fixed)
    every_column = replace(TABLE, continuous_columns=(0, 1, 2, 3, 4))
    assert tabular.fixed_inputs(every_column) is None
    image = modality_of(IMAGE)
    assert image.attack_bounds(IMAGE) == (0, 1) and image.attack_mask(IMAGE) is None
    assert image.fixed_inputs(IMAGE) is None


def test_model_capabilities_are_read_from_the_registration() -> None:
    assert capabilities("cnn", IMAGE).channels_last
    assert not capabilities("mlp", IMAGE).channels_last
    assert capabilities("rnn", TEXT).prune == frozenset()
    assert capabilities("cnn", TEXT).prune == {PruneKind.global_magnitude}
    assert capabilities("mlp", TABLE).prune == set(PruneKind)
    assert capabilities("cnn", TABLE).prune == frozenset()  # no cnn builds on tabular data
    assert capable(lambda can: can.channels_last) == (
        "model=cnn on image data; model=preact_resnet18 on image data; model=torchvision on image data; "
        "model=wide_resnet on image data"
    )
    check_prunable(PruneConfig(kind=PruneKind.structured), "cnn", IMAGE)
    with pytest.raises(DQUserError, match=r"structured cannot prune model=cnn on text data; supported: model=cnn on"):
        check_prunable(PruneConfig(kind=PruneKind.structured), "cnn", TEXT)
    with pytest.raises(
        DQUserError, match=r"global_magnitude cannot prune model=rnn on text data; supported: .*attention"
    ):
        check_prunable(PruneConfig(kind=PruneKind.global_magnitude), "rnn", TEXT)
