"""Any torchvision classification model by name (``model=torchvision model.arch=resnet18``),
its weights from a local file when ``model.weights`` names one, never downloaded.

torchvision's own ``weights=`` enums fetch from the network; here the architecture is built
with random weights (``torchvision.models.get_model(arch, weights=None)``) and a state_dict
saved with ``torch.save(model.state_dict(), path)`` (torchvision's published ``.pth`` files
are such state_dicts) is loaded from ``model.weights`` with ``weights_only=True``, before
the classifier is replaced. dq then wraps the network as every dq model is shaped:

- ``normalize``: the dataset's statistics (a pretrained network fine-tunes to them);
- one-channel images (digits, MNIST, Fashion-MNIST) are repeated to three channels before
  the network, which equals summing the stem's filters over RGB, so pretrained stems keep
  their meaning; a dataset with any other count than 1 or 3 channels is refused;
- ``head``: a fresh ``nn.Linear`` for the dataset's classes in place of the network's last
  ``nn.Linear`` (``fc`` of ResNets, ``classifier[-1]`` of VGG, ``heads.head`` of ViT, ...),
  which becomes an identity inside ``backbone``. A model without a final Linear (SqueezeNet
  classifies with a convolution) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from dq.config.validation import require
from dq.data_records import DatasetMeta
from dq.errors import DQUserError, first_line
from dq.models.layers import Normalize, require_shape
from dq.models.registry import PRUNE_GLOBAL, Capabilities, register

# The class count torchvision builds when none is given: a weights file's classifier has it.
IMAGENET_CLASSES = 1000
HOW_TO_LIST = "python -c 'import torchvision; print(torchvision.models.list_models(torchvision.models))'"


@dataclass
class TorchvisionConfig:
    """``arch``: a name of ``torchvision.models.list_models(torchvision.models)`` (the
    classification models); ``weights``: a local state_dict file for it, or null for random
    initialisation."""

    name: str = "torchvision"
    arch: str = "resnet18"
    weights: Optional[str] = None  # noqa: UP045  (OmegaConf's structured configs need Optional)

    def validate(self) -> None:
        require(
            bool(self.arch.strip()), "arch", f"must name a torchvision classification model; list them: {HOW_TO_LIST}"
        )


class TorchvisionClassifier(nn.Module):
    """``normalize → (1 → 3 channels) → backbone (the torchvision network, last Linear removed) → head``."""

    def __init__(self, backbone: nn.Module, features: int, meta: DatasetMeta) -> None:
        super().__init__()
        self.normalize = Normalize.from_meta(meta)
        self.gray = meta.input_shape[0] == 1
        self.backbone = backbone
        self.head = nn.Linear(features, meta.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.gray:
            x = x.expand(-1, 3, -1, -1)
        return self.head(self.backbone(x))


def classification_models() -> list[str]:
    """The names ``torchvision.models.get_model`` builds as image classifiers."""
    import torchvision

    return torchvision.models.list_models(torchvision.models)


def _last_linear(network: nn.Module, arch: str) -> tuple[str, nn.Linear]:
    found = [(name, m) for name, m in network.named_modules() if isinstance(m, nn.Linear)]
    if not found or found[-1][1].out_features != IMAGENET_CLASSES:
        raise DQUserError(
            f"model.arch={arch} does not end in an nn.Linear classifier; choose one that does (resnet18, ...)"
        )
    return found[-1]


def _load_weights(network: nn.Module, path: str, arch: str) -> None:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DQUserError(f"model.weights={path}: no such file; give a state_dict saved with torch.save, or null")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        # dq.models.size first builds every model on torch's meta device to weigh it: there
        # the file's tensors are assigned (shapes still checked), as copying into storage-less
        # parameters is a no-op that warns for each.
        network.load_state_dict(state, assign=next(network.parameters()).is_meta)
    except Exception as error:  # a pickle that is not a state_dict, or one of another model
        raise DQUserError(f"model.weights={path} does not load into {arch}: {first_line(str(error))}") from error


@register(
    "torchvision", "image", schema=TorchvisionConfig, capabilities=Capabilities(prune=PRUNE_GLOBAL, channels_last=True)
)
def build_torchvision(cfg: TorchvisionConfig, meta: DatasetMeta) -> TorchvisionClassifier:
    """``cfg.arch`` from torchvision on ``[N, 1 or 3, H, W]`` pixels, with ``cfg.weights`` loaded when given.

    Raises:
        DQUserError: an unknown name (with how to list the valid ones), a model that is not
            a Linear classifier, a dataset whose channels are neither 1 nor 3, images too
            small for the network, or a weights file that is missing or does not fit.
    """
    import torchvision

    channels, height, width = require_shape(meta, 3, "[C, H, W]")
    if channels not in (1, 3):
        raise DQUserError(f"model=torchvision takes 1- or 3-channel images, dataset {meta.name} has {channels}")
    if cfg.arch not in classification_models():
        raise DQUserError(f"model.arch={cfg.arch} is not a torchvision classification model; list them: {HOW_TO_LIST}")
    _check_input_size(cfg.arch, height, width)
    network = torchvision.models.get_model(cfg.arch, weights=None)
    if cfg.weights is not None:
        _load_weights(network, cfg.weights, cfg.arch)
    name, last = _last_linear(network, cfg.arch)
    network.set_submodule(name, nn.Identity())
    return TorchvisionClassifier(network, last.in_features, meta)


def _check_input_size(arch: str, height: int, width: int) -> None:
    """Refuse images the network cannot take (VGG's five pools need 32×32, ViT its own
    size) and networks whose training output is not one logits tensor (Inception's and
    GoogLeNet's auxiliary heads), before training: a forward pass of a copy built on torch's
    ``meta`` device (shapes only, nothing allocated or computed)."""
    import torchvision

    with torch.device("meta"):
        probe = torchvision.models.get_model(arch, weights=None)
        try:
            output = probe(torch.zeros(2, 3, height, width))
        except (RuntimeError, AssertionError, ValueError) as error:
            raise DQUserError(
                f"model.arch={arch} cannot take {height}×{width} images ({first_line(str(error))}); choose another arch"
            ) from error
    if not isinstance(output, torch.Tensor):
        raise DQUserError(
            f"model.arch={arch} returns {type(output).__name__} in training, not logits; choose another arch"
        )
