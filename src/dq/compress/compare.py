"""The original beside the compressed model: every measure of issue 12, as flat keys.

``compare`` evaluates the compressed model with the run's own evaluation
(``dq.evaluation.evaluate``: accuracy, loss, ECE, per-group and worst-group accuracy, DP/EO gaps, the
counterfactual flip rate, robust accuracy at each ``eval.robust.eps``) and sets each of
its numbers beside the original's. Keys (``<key>`` is a ``test/...`` key of evaluate, or
one of the derived ``test/class_accuracy/<c>`` and ``test/worst_class_accuracy``):

- ``compress/<key>``: the compressed model (bootstrap intervals and times included);
  ``compress/original/<key>``: the original, from ``original_metrics`` (the original run's
  metrics.json) where it has the key, else evaluated here the same way;
  ``compress/delta/<key>``: compressed − original (intervals and times get none).
- ``compress/pred_change``, ``compress/pred_change/group/<g>``,
  ``compress/pred_change/class/<c>`` (by true class): Hooker et al.'s share of test
  examples whose predicted class changed (dq.compress.changes).
- With ``explain.enabled``: ``compress/explain/<method>/spearman`` and, where the data has
  them, ``compress/explain/<method>/mask_mass`` / ``sensitive_share``, with their
  ``compress/original/...`` and ``compress/delta/...`` (dq.compress.explanation_shift).
- ``compress/size_bytes``, ``compress/params``, ``compress/nonzeros`` and the original's
  (``compress/original/...``); ``compress/size_ratio`` (compressed / original bytes);
  ``compress/sparsity``: 1 − compressed nonzeros / original parameters, the share of the
  original's weights that are zero or gone (dq.compress.footprint). A pruned run adds
  ``compress/pruned_share`` (dq.compress.step): the share of the pruned layers' weights
  (Linear and Conv, biases not) zeroed or removed, which is what ``compress.amount`` asks.
- ``compress/latency_ms@1``, ``compress/latency_ms@256`` and the original's: CPU, median
  of repeated timings after a warm-up, with ``compress/latency_threads`` torch threads
  (dq.compress.latency).
- ``time/compare_s``: what this comparison took, and its parts
  ``time/compare/evaluate_s`` (both models' predictions, evaluation and PGD),
  ``time/compare/explain_s`` and ``time/compare/latency_s``.

An int8 model has no gradients: ``gradient_model`` (its float twin with fake
quantisation) then stands in for it wherever gradients are needed, PGD's robust accuracy
and the attributions; ``compressed`` makes every prediction.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping

import torch
from torch import nn

from dq import metric_keys as keys
from dq.compress.changes import class_accuracy, prediction_change
from dq.compress.footprint import nonzeros, parameter_count, size_bytes
from dq.compress.latency import latencies
from dq.data_records import Splits
from dq.device import uses_amp
from dq.evaluation import evaluate
from dq.inference import predict_logits
from dq.metrics.robustness import robust_metrics
from dq.spec import RunSpec

# The keys evaluate does not give, derived here from its keys or the logits (dq.compress.changes).
DERIVED = ("class_accuracy", "worst_class_accuracy")


def compare(
    original: nn.Module,
    compressed: nn.Module,
    splits: Splits,
    spec: RunSpec,
    device: torch.device,
    *,
    gradient_model: nn.Module | None = None,
    original_metrics: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Every measure of ``compressed`` beside ``original`` on ``splits``' test split, under
    the run's ``spec`` (evaluation, explanation and trainer settings); keys in the module's
    docstring. Neither model is changed (their train/eval modes are restored)."""
    began = time.perf_counter()
    device = torch.device(device)
    attacked = compressed if gradient_model is None else gradient_model
    if gradient_model is None and (spec.eval.robust.eps or spec.explain.enabled):
        check_differentiable(compressed)
    parts: dict[str, float] = {}
    after = _evaluate(compressed, attacked, splits, spec, device)
    after_logits = _logits(compressed, splits, spec, device)
    after.update(class_accuracy(after_logits, splits.test.y, splits.meta.class_names))

    compared = [key for key in after if _comparable(key)]
    before_logits = _logits(original, splits, spec, device)
    before = _original_metrics(original, splits, spec, device, original_metrics or {}, compared)
    before.update(class_accuracy(before_logits, splits.test.y, splits.meta.class_names))
    parts[keys.time("compare/evaluate_s")] = time.perf_counter() - began

    out = {keys.compress(key): value for key, value in after.items()}
    out.update(_beside(before, after, compared))
    changed = prediction_change(before_logits.argmax(dim=1), after_logits.argmax(dim=1), splits.test, splits.meta)
    out.update({keys.compress(key): value for key, value in changed.items()})
    if spec.explain.enabled:  # captum loads only for runs with explanations
        from dq.compress.explanation_shift import explanation_shift

        started = time.perf_counter()
        shift = explanation_shift(original, attacked, splits, spec.explain, device, spec.seed)
        out.update({keys.compress(key): value for key, value in shift["compressed"].items()})
        out.update(_beside(shift["original"], shift["compressed"], list(shift["original"])))
        parts[keys.time("compare/explain_s")] = time.perf_counter() - started
    out.update(footprint(original, compressed))
    started = time.perf_counter()
    out.update(speed(original, compressed, splits))
    parts[keys.time("compare/latency_s")] = time.perf_counter() - started
    out.update(parts)
    out[keys.time("compare_s")] = time.perf_counter() - began
    return out


def check_differentiable(model: nn.Module) -> None:
    """ValueError naming the weights of ``model`` that have no gradients (torchao's int8
    tensors), before PGD or captum fail on them with an autograd message."""
    kinds = sorted({type(p).__name__ for p in model.parameters() if type(p) not in (torch.Tensor, nn.Parameter)})
    if kinds:
        raise ValueError(
            f"the compressed model's weights are {', '.join(kinds)}, which have no gradients: "
            "pass gradient_model (its float twin with fake quantisation) for robust accuracy and attributions"
        )


def footprint(original: nn.Module, compressed: nn.Module) -> dict[str, float]:
    """Size on disk, parameters and nonzeros of both models, their size ratio and the
    sparsity reached against the original's parameter count."""
    out: dict[str, float] = {}
    for key, model in ((keys.compress, compressed), (keys.compress_original, original)):
        out[key("size_bytes")] = size_bytes(model)
        out[key("params")] = parameter_count(model)
        out[key("nonzeros")] = nonzeros(model)
    out[keys.compress("size_ratio")] = out[keys.compress("size_bytes")] / out[keys.compress_original("size_bytes")]
    out[keys.compress("sparsity")] = 1.0 - out[keys.compress("nonzeros")] / max(
        out[keys.compress_original("params")], 1
    )
    return out


def speed(original: nn.Module, compressed: nn.Module, splits: Splits) -> dict[str, float]:
    """CPU latency of both models on batches of the test split's examples."""
    return {
        **latencies(compressed, splits.test.x, keys.compress("")),
        **latencies(original, splits.test.x, keys.compress_original("")),
        keys.compress("latency_threads"): torch.get_num_threads(),
    }


def _evaluate(
    model: nn.Module, attacked: nn.Module, splits: Splits, spec: RunSpec, device: torch.device
) -> dict[str, float]:
    """evaluate's metrics of ``model``; PGD runs on ``attacked`` when that is another model
    (the same ``robust_metrics`` evaluate calls, under the same settings)."""
    evaluate_with = dict(trainer=spec.trainer, device=device, seed=spec.seed)
    if attacked is model:
        return evaluate(model, splits, eval_cfg=spec.eval, **evaluate_with)
    no_attack = dataclasses.replace(spec.eval, robust=dataclasses.replace(spec.eval.robust, eps=[]))
    metrics = evaluate(model, splits, eval_cfg=no_attack, **evaluate_with)
    metrics.update(
        robust_metrics(
            attacked,
            splits.test,
            splits.meta,
            spec.eval.robust,
            device,
            spec.trainer.eval_batch_size,
            spec.seed,
            spec.eval.bootstrap,
        )
    )
    return metrics


def _original_metrics(
    original: nn.Module,
    splits: Splits,
    spec: RunSpec,
    device: torch.device,
    given: Mapping[str, float],
    names: list[str],
) -> dict[str, float]:
    """The original's value of each evaluate key in ``names``: ``given``'s where it holds a
    number; the original is evaluated (once) only when some key is missing there."""
    wanted = [key for key in names if _from_evaluate(key)]
    source = {key: value for key, value in given.items() if _number(value)}  # metrics.json may hold null
    if any(key not in source for key in wanted):
        evaluated = evaluate(original, splits, eval_cfg=spec.eval, trainer=spec.trainer, device=device, seed=spec.seed)
        source = {**evaluated, **source}
    return {key: float(source[key]) for key in wanted if key in source}


def _logits(model: nn.Module, splits: Splits, spec: RunSpec, device: torch.device) -> torch.Tensor:
    amp = uses_amp(device, spec.trainer.amp)
    return predict_logits(model, splits.test, device, spec.trainer.eval_batch_size, amp, str(spec.trainer.amp_dtype))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(key: str) -> bool:
    """A point estimate of a test metric (intervals and times are not compared)."""
    return keys.parse(key).family == keys.TEST and not keys.is_interval(key)


def _from_evaluate(key: str) -> bool:
    """Keys evaluate gives (the derived ones are computed from its or the logits)."""
    return keys.parse(key).metric not in DERIVED


def _beside(before: Mapping[str, float], after: Mapping[str, float], names: list[str]) -> dict[str, float]:
    """``compress/original/<key>`` and ``compress/delta/<key>`` (after − before; NaN when
    either side is NaN or the original lacks the key) for each key."""
    out: dict[str, float] = {}
    for key in names:
        value = before.get(key, math.nan)
        out[keys.compress_original(key)] = value
        out[keys.compress_delta(key)] = after[key] - value
    return out
