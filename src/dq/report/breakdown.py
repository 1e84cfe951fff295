"""Reading the flat metric keys (dq.metric_keys) back into tables: accuracy by group or class,
robust accuracy by ε, the fairness gaps, each explanation method's quality metrics.

Shared by the HTML run page and the model card, so both say the same thing about a run.
Keys follow ``test/<kind>_accuracy/<name>`` and ``test/<kind>_robust_accuracy/<name>@<eps>``
for any ``<kind>`` (``group`` today; ``class`` wherever a run records it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dq import metric_keys as keys

METRIC_GROUPS = (keys.TEST, keys.VAL, keys.TRAIN, keys.EXPLAIN, keys.PARAMS, keys.TIME)


@dataclass
class Breakdown:
    """Accuracy of each group (or class) of one kind, clean and per attack radius."""

    kind: str
    clean: dict[str, float] = field(default_factory=dict)
    robust: dict[str, dict[str, float]] = field(default_factory=dict)  # eps -> name -> value

    def names(self) -> list[str]:
        seen = dict.fromkeys(self.clean)
        for by_name in self.robust.values():
            seen.update(dict.fromkeys(by_name))
        return list(seen)


def breakdowns(metrics: Mapping[str, Any]) -> list[Breakdown]:
    """One ``Breakdown`` per kind found in ``metrics`` (group, class, ...), in key order."""
    found: dict[str, Breakdown] = {}
    for key, value in metrics.items():
        k = keys.parse(key)
        if not _member_accuracy(k) or not isinstance(value, (int, float)):
            continue
        part = found.setdefault(k.scope, Breakdown(k.scope))
        if k.attack == keys.ROBUST:
            part.robust.setdefault(k.eps or "?", {})[k.member] = float(value)
        elif k.eps is None:
            part.clean[k.member] = float(value)
    for part in found.values():
        part.robust = dict(sorted(part.robust.items(), key=lambda item: keys.eps_order(item[0])))
    return list(found.values())


def _member_accuracy(k: keys.MetricKey) -> bool:
    """``test/<kind>_accuracy/<name>`` or ``test/<kind>_robust_accuracy/<name>@<eps>`` (no
    interval bound, no worst-of scope, not AutoAttack's keys)."""
    return (
        k.family == keys.TEST
        and k.measure == keys.ACCURACY
        and k.member is not None
        and k.scope is not None
        and not k.scope.startswith("worst_")
        and k.attack in (None, keys.ROBUST)
        and k.bound is None
    )


def robust_by_eps(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{eps: test/robust_accuracy@eps}``, sorted by ε."""
    found = {eps: float(value) for key, value in metrics.items() if (eps := keys.robust_eps(key)) is not None}
    return dict(sorted(found.items(), key=lambda item: keys.eps_order(item[0])))


def fairness_gaps(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The DP and EO gaps, clean and on adversarial predictions (``test/robust_<gap>@<eps>``),
    plus the counterfactual flip rate where recorded: ``{metric key: value}``."""
    gaps = {key: float(value) for key, value in metrics.items() if _gap(keys.parse(key))}
    flip_rate = keys.test("cf_flip_rate")
    if flip_rate in metrics:
        gaps[flip_rate] = float(metrics[flip_rate])
    return gaps


def _gap(k: keys.MetricKey) -> bool:
    """The gaps ``test/<gap>`` (keys.GAPS) and their PGD counterparts ``test/robust_<gap>@<eps>``."""
    return (
        k.family == keys.TEST
        and k.measure in keys.GAPS
        and k.scope is None
        and k.attack in (None, keys.ROBUST)
        and k.member is None
        and k.bound is None
    )


def explain_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{method: {metric: value}}`` from the ``explain/<method>/<metric>`` keys."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        k = keys.parse(key)
        if k.method is not None:
            found.setdefault(k.method, {})[k.metric] = value
    return found


def grouped(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Metrics by their first path part (test, explain, params, time, ...), known parts first."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        found.setdefault(keys.parse(key).family, {})[key] = value
    order = [name for name in METRIC_GROUPS if name in found] + [name for name in found if name not in METRIC_GROUPS]
    return {name: found[name] for name in order}
