"""What every modality answers, and the lookup from a dataset's metadata to its modality.

A modality (image, tabular, text, series) is one object, registered under the name that
``DatasetMeta.modality`` carries. It owns what differs by modality, so that attacks,
explanations, regularizers and baselines ask it instead of comparing names:

- where attacks and attributions perturb: the input itself, or (``tokens``) the output
  of the model's embedding layer (``dq.modalities.text``);
- what an attack may change: the range it clips to, the inputs that stay fixed;
- which explanation baselines mean something, how inputs group into features for
  occlusion, LIME and Kernel SHAP, how wide a blur is;
- which picture kind draws its attributions (``Picture``; the drawing is dq.explain's);
- capabilities other parts ask about (``columns``, ``pixels``, ``tokens``).

What a *model* can do (be pruned, run channels-last) is declared where the model
registers (``dq.models.registry``), not here. This package loads torch only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

import torch

from dq.config.explain import Baseline
from dq.data_records import DatasetMeta
from dq.registry import Registry


class Picture(StrEnum):
    """How a modality's attributions are drawn (dq.explain.pictures holds one drawer each)."""

    heatmaps = "heatmaps"  # the inputs over their attribution maps
    bars = "bars"  # mean |attribution| per feature
    tokens = "tokens"  # tokens coloured by attribution (a PNG and an HTML page)
    signals = "signals"  # each signal over a band shaded by its attribution


class Modality:
    """The defaults are those of float inputs that all move and group one element per
    feature; each modality overrides what differs.

    Class attributes:
        name: the value of ``DatasetMeta.modality``.
        picture: how its explanations are drawn.
        baselines: the explanation baselines that mean something on its inputs (the rest
            are refused in one line).
        tokens: inputs are token ids, which cannot be differentiated or moved: attacks and
            attributions perturb the output of ``model.embedding`` instead.
        columns: inputs are named columns (standardised or one-hot): the sensitive
            attribute can be one, fairlearn's baselines apply, and a one-hot 0 is "absent".
        pixels: inputs are pixels in [0, 1] whose 0 is black: "removing" a pixel has a
            meaning (pixel flipping), and a black background can make maps agree.
    """

    name: ClassVar[str]
    picture: ClassVar[Picture]
    baselines: ClassVar[tuple[Baseline, ...]]
    tokens: ClassVar[bool] = False
    columns: ClassVar[bool] = False
    pixels: ClassVar[bool] = False

    # ------------------------------------------------------------------ attacks
    def attackable(self, meta: DatasetMeta) -> bool:
        """False for data a gradient attack cannot move."""
        return True

    def attack_bounds(self, meta: DatasetMeta) -> tuple[float, float] | None:
        """The range attacked inputs are clipped to (None: unclipped)."""
        return meta.valid_range

    def fixed_inputs(self, meta: DatasetMeta) -> torch.Tensor | None:
        """bool [1, *input_shape], True on the inputs an attack must not move; None: all move."""
        return None

    def attack_mask(self, meta: DatasetMeta) -> torch.Tensor | None:
        """float [1, *input_shape], 1 where an attack may move the input, 0 where it may
        not; None: everywhere."""
        return None

    # ------------------------------------------------------------------ explanations
    def patch_size(self, meta: DatasetMeta) -> int:
        """Side (images) or length (series) of the patches that occlusion slides and LIME /
        Kernel SHAP switch on and off; 1 where every element is its own feature."""
        return 1

    def blur_sigma(self, meta: DatasetMeta) -> float:
        """The width of the ``blur`` baseline; only modalities that allow it define one."""
        raise ValueError(f"{self.name} data has no blur baseline")

    def feature_groups(self, meta: DatasetMeta, inputs: torch.Tensor, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """One feature-id tensor ``[1, ...]`` per example of ``inputs``, ids from 0, for
        LIME / Kernel SHAP (``ids``: the token ids of text, else None)."""
        raise NotImplementedError

    def occlusion_window(self, shape: tuple[int, ...], meta: DatasetMeta) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(sliding window, strides) of one occlusion patch over one example of ``shape``."""
        raise NotImplementedError


MODALITIES: Registry[Modality] = Registry("modality", package="dq.modalities")


def register(cls: type[Modality]) -> type[Modality]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    MODALITIES.add(cls.name, cls())
    return cls


def modality_of(meta: DatasetMeta) -> Modality:
    """The modality of ``meta``'s data (DQUserError for a name no module registered)."""
    return MODALITIES.get(meta.modality).value
