"""One home per modality: each kind of data (image, tabular, text, series) is one object
that owns what differs by modality (docs/design.md, "Modalities").

``modality_of(meta)`` returns it; its module (one per modality, found by the registry)
says where attacks and attributions perturb, what an attack may change, which
explanation baselines apply, how its features group and which picture draws them.
Adding a modality is one module here (CONTRIBUTING.md, "Add a modality").
"""

from dq.modalities.base import MODALITIES, Modality, Picture, modality_of, register

__all__ = ["MODALITIES", "Modality", "Picture", "modality_of", "register"]
