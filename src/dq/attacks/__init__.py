"""Attacks on a model's input, used by adversarial training and robust evaluation."""

from dq.attacks.domain import attack_bounds, attackable, check_attackable, feature_mask
from dq.attacks.pgd import Start, eval_mode, pgd, project

__all__ = ["Start", "attack_bounds", "attackable", "check_attackable", "eval_mode", "feature_mask", "pgd", "project"]
