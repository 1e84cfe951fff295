"""Baseline rows: other people's methods, on dq's own split, scored with dq's own metrics.

A baseline is a function ``(cfg, seed, **baseline_args) -> dict[str, float]``: ``cfg`` is
the row's composed run config (what dq-train would run for that row and seed), from which
the data is built with ``dq.data.build`` exactly as dq-train builds it, so a baseline and
our runs see the same train and test examples. The fitting is dq.baselines.fit's (shared
with ``dq-baselines``); metrics use dq's keys and functions (dq.baselines.scores: test
accuracy, the DP/EO gaps, per-group accuracy) so a table compares like with like.

A table names one as ``baseline: dq.paper.baselines.<function>``; ``baseline_args`` are
passed as keyword arguments.
"""

from __future__ import annotations

from omegaconf import DictConfig

from dq import metric_keys as keys
from dq.baselines import fit
from dq.baselines.scores import prediction_metrics
from dq.data import build
from dq.data_records import Splits
from dq.spec import to_spec

__all__ = ["available", "exponentiated_gradient", "logistic_regression"]


def available() -> list[str]:
    return ["dq.paper.baselines.exponentiated_gradient", "dq.paper.baselines.logistic_regression"]


def _splits(cfg: DictConfig) -> tuple[Splits, int]:
    """The row's splits, and its ``trainer.num_threads`` (the solvers' thread cap)."""
    spec = to_spec(cfg)
    splits = build(spec.dataset, spec.seed)
    fit.require_binary_groups(splits)
    return splits, spec.trainer.num_threads


def _row(splits: Splits, fitted: fit.Fitted) -> dict[str, float]:
    return {**prediction_metrics(splits, fitted.pred), keys.time("train_s"): fitted.fit_s}


def logistic_regression(cfg: DictConfig, seed: int, C: float = 1.0, max_iter: int = 1000) -> dict[str, float]:
    """An unconstrained scikit-learn LogisticRegression on dq's train split."""
    splits, threads = _splits(cfg)
    with fit.blas_threads(threads):
        return _row(splits, fit.logistic_regression(splits, seed, C=C, max_iter=max_iter))


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
    splits, threads = _splits(cfg)
    with fit.blas_threads(threads):
        fitted = fit.exponentiated_gradient(splits, seed, constraint=constraint, eps=eps, max_iter=max_iter, C=C)
    return _row(splits, fitted)
