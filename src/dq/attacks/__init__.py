"""Attacks on a model's input (or, for text, its embedding output), used by adversarial
training and robust evaluation alike through one ``PGD`` object."""

from dq.attacks.domain import attack_bounds, attackable, feature_mask
from dq.attacks.pgd import PGD, LossFn, Start, eval_mode, pgd, project
from dq.attacks.spaces import Ball, EmbeddingSpace, InputSpace, attack_space

__all__ = [
    "PGD",
    "Ball",
    "EmbeddingSpace",
    "InputSpace",
    "LossFn",
    "Start",
    "attack_bounds",
    "attack_space",
    "attackable",
    "eval_mode",
    "feature_mask",
    "pgd",
    "project",
]
