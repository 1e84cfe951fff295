"""Baseline rows: other people's methods, on dq's own split, scored with dq's own metrics.

A baseline is a function ``(cfg, seed, **baseline_args) -> dict[str, float]``: ``cfg`` is
the row's composed run config (what dq-train would run for that row and seed), from which
the data is built with ``dq.data.build`` exactly as dq-train builds it, so a baseline and
our runs see the same train and test examples. Metrics use dq's keys and functions
(``test/accuracy``, ``test/dp_diff``, ``test/eo_diff``, ``test/group_accuracy/<g>``) so a
table compares like with like.

A table names one as ``baseline: dq.paper.baselines.<function>``; ``baseline_args`` are
passed as keyword arguments.
"""

from __future__ import annotations

import time

import numpy as np
from omegaconf import DictConfig

from dq.data import build
from dq.errors import DQUserError
from dq.metrics.fairness import fairness_gaps, group_accuracy
from dq.records import Splits
from dq.spec import to_spec

__all__ = ["available", "exponentiated_gradient", "logistic_regression"]


def available() -> list[str]:
    return ["dq.paper.baselines.exponentiated_gradient", "dq.paper.baselines.logistic_regression"]


def _splits(cfg: DictConfig) -> Splits:
    spec = to_spec(cfg)
    splits = build(spec.dataset, spec.seed)
    if splits.meta.modality != "tabular" or not splits.meta.group_names:
        raise DQUserError(
            f"this baseline needs tabular data with sensitive groups; dataset {spec.dataset.name} "
            f"is {splits.meta.modality}{'' if splits.meta.group_names else ' without groups'}"
        )
    return splits


def _arrays(splits: Splits, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = getattr(splits, part)
    x = split.x.reshape(len(split.x), -1).numpy()
    return x, split.y.numpy(), split.group.numpy()


def _scores(splits: Splits, pred: np.ndarray) -> dict[str, float]:
    """dq's test metrics of predictions on the test split."""
    _, y, group = _arrays(splits, "test")
    metrics = {"test/accuracy": float(np.mean(pred == y))}
    metrics.update(
        {f"test/{key}": value for key, value in fairness_gaps(y, pred, group, splits.meta.num_classes).items()}
    )
    names = splits.meta.group_names
    metrics.update({f"test/group_accuracy/{g}": v for g, v in group_accuracy(y, pred, group, names).items()})
    return metrics


def logistic_regression(cfg: DictConfig, seed: int, C: float = 1.0, max_iter: int = 1000) -> dict[str, float]:
    """An unconstrained scikit-learn LogisticRegression on dq's train split."""
    from sklearn.linear_model import LogisticRegression

    splits = _splits(cfg)
    x, y, _ = _arrays(splits, "train")
    start = time.perf_counter()
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(x, y)
    fitted = time.perf_counter() - start
    return {**_scores(splits, model.predict(_arrays(splits, "test")[0])), "time/train_s": fitted}


def exponentiated_gradient(
    cfg: DictConfig,
    seed: int,
    constraint: str = "demographic_parity",
    eps: float = 0.01,
    max_iter: int = 50,
    C: float = 1.0,
) -> dict[str, float]:
    """fairlearn's ExponentiatedGradient (Agarwal et al. 2018) around a LogisticRegression,
    with DemographicParity (or ``constraint: equalized_odds``) on the sensitive groups of
    dq's train split; its randomized classifier predicts with ``random_state=seed``."""
    from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    constraints = {"demographic_parity": DemographicParity, "equalized_odds": EqualizedOdds}
    if constraint not in constraints:
        raise DQUserError(f"unknown constraint {constraint!r}; allowed: {', '.join(constraints)}")
    splits = _splits(cfg)
    x, y, group = _arrays(splits, "train")
    start = time.perf_counter()
    mitigator = ExponentiatedGradient(
        LogisticRegression(C=C, max_iter=1000, random_state=seed),
        constraints=constraints[constraint](),
        eps=eps,
        max_iter=max_iter,
    )
    mitigator.fit(x, y, sensitive_features=group)
    fitted = time.perf_counter() - start
    pred = np.asarray(mitigator.predict(_arrays(splits, "test")[0], random_state=seed))
    return {**_scores(splits, pred), "time/train_s": fitted}
