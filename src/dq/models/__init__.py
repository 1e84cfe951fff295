"""Models: plain ``nn.Module``s mapping ``x`` to logits ``[N, num_classes]``.

``dq.models.registry.build(cfg.model, meta)`` looks the model name and the dataset's
modality up in the registry that the model modules (one plugin each: mlp, cnn, rnn,
attention) fill on import. A model knows nothing of how it is trained, attacked or
explained; token models expose their ``embedding`` layer and image models normalise
inside, so everything outside works in token / pixel space. Every model's classifier is a
``nn.Linear`` named ``head``. LoRA's adapters and its pretrained base (a finished run's
weights) adapt a built model from ``dq.objectives.lora``.

This package brings only the registry's functions (``build``, ``models_for``, ...): the
model modules are imported when a model is first looked up.
"""

from dq.models.registry import build, count_parameters, model_names, models_for, supported_modalities

__all__ = ["build", "count_parameters", "model_names", "models_for", "supported_modalities"]
