"""Baselines fitted on dq's own split, for binary tabular data with sensitive groups.

Each function takes the ``Splits`` dq-train builds (``dq.data.build`` with the run's
dataset config and seed), fits on the train split and returns its predictions on the test
split and the seconds the fit took, so every baseline is judged on the very examples a
dq run is judged on. The inputs are the run's inputs (standardised continuous columns,
one-hot categories; the sensitive one-hot only with ``dataset.include_sensitive``).

- :func:`logistic_regression`: unconstrained scikit-learn LogisticRegression.
- :func:`exponentiated_gradient`: fairlearn's reductions approach (Agarwal et al. 2018,
  "A Reductions Approach to Fair Classification") around that logistic regression.
- :func:`threshold_optimizer`: fairlearn's post-processing (Hardt, Price & Srebro 2016,
  "Equality of Opportunity in Supervised Learning") of a trained dq model's scores,
  P(y = 1 | x) from its softmax: group-specific (randomised) thresholds fitted on the train
  split, the model left as it is (``prefit=True``).

fairlearn's reductions and ThresholdOptimizer handle binary labels only.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from dq.data_records import Split, Splits
from dq.errors import DQUserError
from dq.inference import predict_logits
from dq.modalities import modality_of

# fairlearn's names for dq's fairness criteria (regularizer.fairness.criterion).
CONSTRAINTS = {"dp": "demographic_parity", "eo": "equalized_odds"}


def blas_threads(num_threads: int) -> AbstractContextManager:
    """Cap the BLAS/OpenMP threads scikit-learn's solvers use (threadpoolctl, which
    scikit-learn depends on), as ``trainer.num_threads`` caps torch's: ExponentiatedGradient
    on 400 adult rows took 11-16 s with the default threads on a busy 2-core machine and
    about 2 s with one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=num_threads)


@dataclass
class Fitted:
    """A baseline's predicted classes on the test split and how long its fit took."""

    pred: np.ndarray
    fit_s: float


def require_binary_groups(splits: Splits, what: str = "this baseline") -> None:
    """Raise DQUserError unless ``splits`` is tabular, binary, with sensitive groups."""
    meta = splits.meta
    problems = []
    columns = modality_of(meta).columns
    if not columns:
        problems.append(f"{meta.modality} data")
    if not meta.group_names:
        problems.append("no sensitive groups")
    if columns and meta.num_classes != 2:
        problems.append(f"{meta.num_classes} classes (fairlearn's reductions and post-processing need 2)")
    if problems:
        raise DQUserError(
            f"{what} needs binary tabular data with sensitive groups; dataset {meta.name} has {' and '.join(problems)}"
        )


def arrays(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` [N, F], ``y`` [N] and ``group`` [N] of a split as numpy arrays."""
    assert split.group is not None, "require_binary_groups checks for groups"
    return split.x.reshape(len(split.x), -1).numpy(), split.y.numpy(), split.group.numpy()


def _constraint(name: str) -> Any:
    from fairlearn.reductions import DemographicParity, EqualizedOdds

    moments = {"demographic_parity": DemographicParity, "equalized_odds": EqualizedOdds}
    if name not in moments:
        raise DQUserError(f"unknown constraint {name!r}; allowed: {', '.join(moments)}")
    return moments[name]()


def logistic_regression(splits: Splits, seed: int, C: float = 1.0, max_iter: int = 1000) -> Fitted:
    """An unconstrained LogisticRegression on the train split."""
    from sklearn.linear_model import LogisticRegression

    x, y, _ = arrays(splits.train)
    start = time.perf_counter()
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed).fit(x, y)
    fit_s = time.perf_counter() - start
    return Fitted(np.asarray(model.predict(arrays(splits.test)[0])), fit_s)


def exponentiated_gradient(
    splits: Splits,
    seed: int,
    constraint: str = "demographic_parity",
    eps: float = 0.01,
    max_iter: int = 50,
    C: float = 1.0,
) -> Fitted:
    """fairlearn's ExponentiatedGradient around a LogisticRegression under ``constraint``
    (``demographic_parity`` or ``equalized_odds``, allowed violation ``eps``) on the train
    split's groups; its randomised classifier predicts with ``random_state=seed``."""
    from fairlearn.reductions import ExponentiatedGradient
    from sklearn.linear_model import LogisticRegression

    moment = _constraint(constraint)
    x, y, group = arrays(splits.train)
    start = time.perf_counter()
    mitigator = ExponentiatedGradient(
        LogisticRegression(C=C, max_iter=1000, random_state=seed), constraints=moment, eps=eps, max_iter=max_iter
    )
    mitigator.fit(x, y, sensitive_features=group)
    fit_s = time.perf_counter() - start
    return Fitted(np.asarray(mitigator.predict(arrays(splits.test)[0], random_state=seed)), fit_s)


class ModelScores(ClassifierMixin, BaseEstimator):
    """A trained dq model as a fitted scikit-learn classifier: ``predict_proba`` is its
    softmax, so fairlearn's ThresholdOptimizer can post-process it (``prefit=True``)."""

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int = 512) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.classes_ = np.array([0, 1])

    def __sklearn_is_fitted__(self) -> bool:
        return True  # trained by dq-train; never fitted here

    def fit(self, x: np.ndarray, y: np.ndarray) -> ModelScores:
        raise NotImplementedError("a dq model is trained by dq-train; ThresholdOptimizer uses it with prefit=True")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        inputs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        split = Split(x=inputs, y=torch.zeros(len(inputs), dtype=torch.long))
        logits = predict_logits(self.model, split, self.device, self.batch_size)
        # float64: fairlearn's thresholder writes float64 mixtures into an array of these (pandas refuses float32).
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)


def threshold_optimizer(
    model: nn.Module, splits: Splits, seed: int, constraint: str = "demographic_parity", device: str = "cpu"
) -> Fitted:
    """fairlearn's ThresholdOptimizer on ``model``'s P(y = 1 | x), thresholds per group
    fitted on the train split under ``constraint`` for accuracy; test predictions drawn
    with ``random_state=seed`` (the thresholds are randomised between two)."""
    from fairlearn.postprocessing import ThresholdOptimizer

    _constraint(constraint)  # the same names, checked the same way
    x, y, group = arrays(splits.train)
    scorer = ModelScores(model, torch.device(device))
    start = time.perf_counter()
    optimizer = ThresholdOptimizer(
        estimator=scorer,
        constraints=constraint,
        objective="accuracy_score",
        prefit=True,
        predict_method="predict_proba",
    )
    optimizer.fit(x, y, sensitive_features=group)
    fit_s = time.perf_counter() - start
    x_test, _, group_test = arrays(splits.test)
    return Fitted(np.asarray(optimizer.predict(x_test, sensitive_features=group_test, random_state=seed)), fit_s)
