"""Attacks on a model's input (or, for text, its embedding output), used by adversarial
training and robust evaluation alike through one ``PGD`` object. What an attack may
change on a dataset (range, fixed inputs, the embedding) is its modality's (dq.modalities)."""

from dq.attacks.pgd import PGD, LossFn, Start, eval_mode, pgd, project
from dq.attacks.spaces import Ball, EmbeddingSpace, InputSpace, attack_space

__all__ = [
    "PGD",
    "Ball",
    "EmbeddingSpace",
    "InputSpace",
    "LossFn",
    "Start",
    "attack_space",
    "eval_mode",
    "pgd",
    "project",
]
