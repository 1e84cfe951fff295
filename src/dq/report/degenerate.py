"""Degenerate models, named wherever their numbers could mislead: a constant predictor
(one class for (almost) every test example, so its accuracy is the majority rate and its
fairness gaps are 0 by construction) and a run whose loss diverged while staying finite
(NaN and inf stop a run already: dq.engine.nonfinite).

Both rules read only flat metric keys, so the model card, report.html, the sweep summary,
the Pareto plots, Optuna's front and best trials and dq-table's rows all apply the same
rule to a metrics dict; ``diverged`` is the one rule that needs the epoch history, and the
runner records its verdict as ``train/diverged``. Torch-free: reports import this.

The thresholds, and why:

- constant predictor: ``test/top_class_share`` ≥ 0.99 (at most 1 in 100 test predictions
  leave the most predicted class) and an accuracy that gains less than a tenth of what the
  majority rate leaves to gain (accuracy − rate < 0.1 × (1 − rate): 0.025 on Adult's 0.746).
  The second condition keeps a good model of a data set whose minority class is under 1%
  of the examples: it predicts the majority class 99% of the time too, but closes most of
  the gap to 1. A model that predicts one class and scores about what always answering
  the majority class scores has learned nothing that shows in its accuracy, and its
  demographic-parity gap of 0 says nothing about fairness.
- diverged: the last epoch's validation cross-entropy above 10 × ln(n_classes), or its
  training loss above 10 × the smallest training loss of the earlier epochs and above
  ln(n_classes). A model that always predicts the uniform distribution scores
  ln(n_classes) (0.69 for two classes): a mean loss ten times that means confidently wrong
  logits, which no training that works ends with (even a heavily overfitted Adult MLP
  stays near 1-3); a training loss that rises tenfold above its best is an optimiser that
  blew up, not overfitting (overfitting lowers the training loss). The validation loss is
  the plain cross-entropy whatever the objective, so regulariser weights cannot trip the
  first rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dq import metric_keys as keys

MAJORITY_RATE = keys.test("majority_rate")
TOP_CLASS_SHARE = keys.test("top_class_share")
DIVERGED = keys.train("diverged")

TOP_SHARE_MIN = 0.99
MAJORITY_GAIN = 0.1  # of 1 − majority rate
CHANCE_LOSS_FACTOR = 10.0
RISE_FACTOR = 10.0

CONSTANT = "constant predictor"
DIVERGED_LABEL = "diverged"

RULES = (
    f"a constant predictor: at least {TOP_SHARE_MIN:.0%} of the test predictions are one class and the accuracy gains "
    f"less than {MAJORITY_GAIN:.0%} of what the test majority rate leaves to gain (its fairness gaps are 0 by construction)",
    f"a diverged run: the last epoch's validation loss above {CHANCE_LOSS_FACTOR:g} × ln(number of classes), or its "
    f"training loss above {RISE_FACTOR:g} × the best earlier epoch's and above ln(number of classes)",
)


def _number(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def is_constant_predictor(metrics: Mapping[str, Any], prefix: str = keys.TEST) -> bool:
    """One class for (almost) every test example, at (about) the majority rate's accuracy."""
    share = _number(metrics, keys.metric(prefix, "top_class_share"))
    rate = _number(metrics, keys.metric(prefix, "majority_rate"))
    acc = _number(metrics, keys.metric(prefix, keys.ACCURACY))
    if share is None or rate is None or acc is None:
        return False
    return share >= TOP_SHARE_MIN and acc - rate < MAJORITY_GAIN * (1 - rate)


def is_diverged(metrics: Mapping[str, Any]) -> bool:
    value = _number(metrics, DIVERGED)
    return value is not None and value > 0


def flags(metrics: Mapping[str, Any]) -> list[str]:
    """``["constant predictor", "diverged"]``, the rules the run's metrics break (empty: sound)."""
    found = [CONSTANT] if is_constant_predictor(metrics) else []
    return found + ([DIVERGED_LABEL] if is_diverged(metrics) else [])


def mark(metrics: Mapping[str, Any]) -> str:
    """``"constant predictor, diverged"``; ``""`` for a sound run (a table cell, a label suffix)."""
    return ", ".join(flags(metrics))


def caveat_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The model card's and report's sentences for each rule the run breaks, with its numbers."""
    lines = []
    if is_constant_predictor(metrics):
        lines.append(
            f"degenerate: a constant predictor: {metrics[TOP_CLASS_SHARE]:.1%} of the test predictions are one class, "
            f"and its accuracy {metrics[keys.test(keys.ACCURACY)]:.3f} is that of always answering the majority class "
            f"({metrics[MAJORITY_RATE]:.3f}); its fairness gaps are 0 by construction, not a sign of fairness"
        )
    if is_diverged(metrics):
        loss = _number(metrics, keys.test(keys.LOSS))
        shown = f" (test loss {loss:.3g})" if loss is not None else ""
        lines.append(
            f"degenerate: training diverged{shown}: the loss rose far above a chance-level predictor's while staying "
            "finite; lower optimizer.lr or set trainer.grad_clip before reading any number here"
        )
    return lines


def diverged(history: Sequence[Mapping[str, Any]], num_classes: int) -> bool:
    """Whether the epoch records of a fit (metrics.jsonl's lines) show a finite divergence,
    by the rule in this module's docstring."""
    if not history:
        return False
    chance = math.log(max(num_classes, 2))
    last = history[-1]
    val_loss = _number(last, keys.val(keys.LOSS))
    if val_loss is not None and val_loss > CHANCE_LOSS_FACTOR * chance:
        return True
    train_loss = _number(last, keys.train(keys.LOSS))
    earlier = [loss for record in history[:-1] if (loss := _number(record, keys.train(keys.LOSS))) is not None]
    return train_loss is not None and bool(earlier) and train_loss > max(RISE_FACTOR * min(earlier), chance)


def with_majority_rate(metrics: Mapping[str, Any], accuracy_text: str) -> str:
    """``0.746 (majority rate 0.746)``: an accuracy never shown without the rate a constant
    predictor would score; the text alone where the run has no majority rate."""
    rate = _number(metrics, MAJORITY_RATE)
    return accuracy_text if rate is None else f"{accuracy_text} (majority rate {rate:.3f})"
