"""Robust accuracy: accuracy on PGD examples of the test split, at each radius asked for.

Keys: ``test/robust_accuracy@<eps>`` and, where the split has groups,
``test/group_robust_accuracy/<group>@<eps>`` and ``test/worst_group_robust_accuracy@<eps>``
(the smallest of those, over the groups present; with ``dataset.group=label`` the
worst class's robust accuracy, the number robust-fairness methods try to raise), and
the group fairness of robustness, ``test/robust_<gap>@<eps>`` for both
gaps of dq.metric_keys.GAPS: the demographic-parity and equalized-odds gaps of the
predictions on PGD examples, computed by the same fairlearn-backed ``fairness_gaps`` as
the clean ``test/<gap>`` (one-vs-rest, worst class, for multi-class tasks).
``<eps>`` is written by ``dq.metric_keys.eps_tag`` (``f"{eps:g}"``).
The attack is the same ``dq.attacks.PGD`` that adversarial training uses: it maximises
the cross-entropy with the true labels, clipped to the valid range and, on tabular data,
moving only the continuous columns. On text it moves the output of ``model.embedding``
(per-token ε, padding fixed): embedding-space robustness, not robustness to word
substitutions. Tabular data without continuous columns gets no robust metrics, and no error.

With ``eval.robust.attack=autoattack`` the same examples are also attacked with standard
AutoAttack (dq.attacks.autoattack): ``test/autoattack_accuracy@<eps>`` and its group keys,
named as PGD's (``robust`` → ``autoattack``), ``time/autoattack_s`` and
``time/autoattack_per_example_s`` (seconds per example and radius: the cost that
``eval.robust.limit`` multiplies). ``eval.robust.attack=apgd`` runs AutoAttack's cheaper
version (APGD-CE and APGD-T only) under its own keys (``robust`` → ``apgd``), never under
AutoAttack's. PGD's keys stay: a gap between the two is the reviewer's sign that PGD
overestimated robustness.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from dq import metric_keys as keys
from dq.attacks import PGD
from dq.attacks.autoattack import autoattack_predictions, check_autoattack
from dq.config.eval import RobustAttack, RobustEvalConfig
from dq.data_records import DatasetMeta, Split, float_inputs
from dq.modalities import modality_of

# Each version of AutoAttack writes under its own attack name, so the keys say which ran.
AUTOATTACK_KEYS = {RobustAttack.autoattack: keys.AUTOATTACK, RobustAttack.apgd: keys.APGD}


def robust_predictions(
    model: nn.Module,
    split: Split,
    meta: DatasetMeta,
    cfg: RobustEvalConfig,
    eps: float,
    device: torch.device,
    batch_size: int,
    seed: int = 0,
) -> torch.Tensor:
    """Predicted classes [N] (CPU) on PGD examples of ``split`` at radius ``eps``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return PGD(cfg.at(eps), meta).predict(model, split, device, batch_size, generator)


def robust_metrics(
    model: nn.Module,
    split: Split,
    meta: DatasetMeta,
    cfg: RobustEvalConfig,
    device: torch.device,
    batch_size: int,
    seed: int = 0,
    n_boot: int = 0,
) -> dict[str, float]:
    """``test/robust_accuracy@<eps>`` for each ``cfg.eps`` (and per group, and the worst
    group, where the split has groups) on the first ``cfg.limit`` examples of ``split``; {} with no eps or for
    tabular data without continuous columns.

    The random start is drawn from a generator seeded with ``seed``, so the numbers repeat.
    With ``n_boot`` > 0 the group metrics get bootstrap intervals (:func:`robust_intervals`).
    The model's train/eval mode is restored afterwards.
    """
    if not cfg.eps or not modality_of(meta).attackable(meta) or len(split) == 0:
        return {}
    if cfg.limit is not None:
        split = split.subset(slice(0, cfg.limit))
    y = split.y.cpu()
    out: dict[str, float] = {}
    for eps in cfg.eps:
        pred = robust_predictions(model, split, meta, cfg, float(eps), device, batch_size, seed)
        out.update(attacked_metrics(y, pred, split, meta, keys.eps_tag(eps), keys.ROBUST, n_boot, seed))
    if cfg.attack != RobustAttack.pgd:
        out.update(autoattack_metrics(model, split, meta, cfg, device, batch_size, seed, n_boot))
    return out


def attacked_metrics(
    y: torch.Tensor,
    pred: torch.Tensor,
    split: Split,
    meta: DatasetMeta,
    tag: str,
    attack: str,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """The keys of one attack at one radius from its predictions ``pred`` [N]:
    ``test/<attack>_accuracy@<tag>`` and, where the split has groups,
    ``test/group_<attack>_accuracy/<group>@<tag>``, ``test/worst_group_<attack>_accuracy@<tag>``,
    and ``test/<attack>_<gap>@<tag>`` for both gaps; with ``n_boot`` > 0
    their bootstrap intervals (:func:`robust_intervals`)."""
    out = {keys.robust_accuracy(tag, attack): float((pred == y).float().mean())}
    if split.group is not None and meta.has_groups:
        from dq.metrics.fairness import fairness_gaps, group_accuracy  # fairlearn: only for data with groups

        y_np, pred_np, group_np = y.numpy(), pred.numpy(), split.group.cpu().numpy()
        by_group = group_accuracy(y_np, pred_np, group_np, meta.group_names)
        for name, value in by_group.items():
            out[keys.group_robust_accuracy(name, tag, attack)] = value
        if by_group:
            out[keys.worst_group_robust_accuracy(tag, attack)] = min(by_group.values())
        for name, value in fairness_gaps(y_np, pred_np, group_np, meta.num_classes).items():
            out[keys.robust_gap(name, tag, attack)] = value
        out.update(robust_intervals(y_np, pred_np, group_np, meta, tag, n_boot, seed, attack))
    return out


def autoattack_metrics(
    model: nn.Module,
    split: Split,
    meta: DatasetMeta,
    cfg: RobustEvalConfig,
    device: torch.device,
    batch_size: int,
    seed: int = 0,
    n_boot: int = 0,
) -> dict[str, float]:
    """``test/<attack>_accuracy@<eps>`` (and its group keys, named as PGD's) for each
    ``cfg.eps`` on ``split`` (already cut to ``cfg.limit``): AutoAttack in the version
    ``cfg.attack`` names (``autoattack``: standard, ``apgd``: APGD-CE and APGD-T) under
    ``cfg.norm`` (dq.attacks.autoattack), seeded with ``seed``, with the seconds it took in
    ``time/<attack>_s`` and per example and radius in ``time/<attack>_per_example_s``."""
    attack = AUTOATTACK_KEYS[cfg.attack]
    began = time.perf_counter()
    y = split.y.cpu()
    out: dict[str, float] = {}
    for eps in cfg.eps:
        pred = autoattack_predictions(
            model, float_inputs(split.x), split.y, meta, cfg.attack, cfg.norm, float(eps), device, batch_size, seed
        )
        out.update(attacked_metrics(y, pred, split, meta, keys.eps_tag(eps), attack, n_boot, seed))
    seconds = time.perf_counter() - began
    out[keys.attack_seconds(attack)] = seconds
    out[keys.attack_seconds_per_example(attack)] = seconds / (len(split) * len(cfg.eps))
    return out


def check_robust_eval(cfg: RobustEvalConfig, meta: DatasetMeta) -> None:
    """One-line DQUserError, before training, for a robust evaluation that cannot run on
    ``meta``'s data (AutoAttack on text, or past the radius its fixed columns allow)."""
    if cfg.attack != RobustAttack.pgd and cfg.eps and modality_of(meta).attackable(meta):
        check_autoattack(cfg.attack, meta, [float(e) for e in cfg.eps])


def robust_intervals(
    y: np.ndarray,
    pred: np.ndarray,
    group: np.ndarray,
    meta: DatasetMeta,
    tag: str,
    n_boot: int,
    seed: int,
    attack: str = keys.ROBUST,
) -> dict[str, float]:
    """Bootstrap 95% intervals (dq.metrics.intervals) of one attack's accuracy at radius
    ``tag``, per group and of the worst group, and of its DP/EO gaps, under that attack's
    keys (``test/<attack>_accuracy@<tag>/ci_low``, ``test/group_<attack>_accuracy/<g>@<tag>/ci_low``,
    ...); {} when ``n_boot`` is 0."""
    if n_boot <= 0:
        return {}
    from dq.metrics.intervals import GROUP_ACCURACY, WORST_GROUP_ACCURACY, group_intervals, interval_metrics

    def key(name: str) -> str:
        statistic, _, group = name.partition("/")
        if statistic == GROUP_ACCURACY:
            return keys.group_robust_accuracy(group, tag, attack)
        if statistic == WORST_GROUP_ACCURACY:
            return keys.worst_group_robust_accuracy(tag, attack)
        if statistic == keys.ACCURACY:
            return keys.robust_accuracy(tag, attack)
        return keys.robust_gap(statistic, tag, attack)  # DP_DIFF, EO_DIFF

    intervals = group_intervals(y, pred, group, meta.group_names, meta.num_classes, n_boot, seed)
    return interval_metrics(intervals, key)
