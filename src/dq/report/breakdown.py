"""Reading docs/design.md's flat metric keys back into tables: accuracy by group or class,
robust accuracy by ε, the fairness gaps, each explanation method's quality metrics.

Shared by the HTML run page and the model card, so both say the same thing about a run.
Keys follow ``test/<kind>_accuracy/<name>`` and ``test/<kind>_robust_accuracy/<name>@<eps>``
for any ``<kind>`` (``group`` today; ``class`` wherever a run records it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_BREAKDOWN = re.compile(r"^test/(?P<kind>[a-z]+)_(?P<robust>robust_)?accuracy/(?P<name>[^/]+?)(?:@(?P<eps>[^@/]+))?$")
_ROBUST = re.compile(r"^test/robust_accuracy@(?P<eps>[^@/]+)$")
_GAP = re.compile(r"^test/(?P<robust>robust_)?(?P<gap>dp|eo)_diff(?:@(?P<eps>[^@/]+))?$")
_EXPLAIN = re.compile(r"^explain/(?P<method>[^/]+)/(?P<metric>.+)$")
METRIC_GROUPS = ("test", "val", "train", "explain", "params", "time")


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


def _eps_key(eps: str) -> tuple[float, str]:
    try:
        return float(eps), eps
    except ValueError:
        return float("inf"), eps


def breakdowns(metrics: Mapping[str, Any]) -> list[Breakdown]:
    """One ``Breakdown`` per kind found in ``metrics`` (group, class, ...), in key order."""
    found: dict[str, Breakdown] = {}
    for key, value in metrics.items():
        match = _BREAKDOWN.match(key)
        if not match or not isinstance(value, (int, float)):
            continue
        part = found.setdefault(match["kind"], Breakdown(match["kind"]))
        if match["robust"]:
            part.robust.setdefault(match["eps"] or "?", {})[match["name"]] = float(value)
        elif match["eps"] is None:
            part.clean[match["name"]] = float(value)
    for part in found.values():
        part.robust = dict(sorted(part.robust.items(), key=lambda item: _eps_key(item[0])))
    return list(found.values())


def robust_by_eps(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{eps: test/robust_accuracy@eps}``, sorted by ε."""
    found = {m["eps"]: float(v) for k, v in metrics.items() if (m := _ROBUST.match(k))}
    return dict(sorted(found.items(), key=lambda item: _eps_key(item[0])))


def fairness_gaps(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The DP and EO gaps, clean and on adversarial predictions (``test/robust_dp_diff@eps``),
    plus the counterfactual flip rate where recorded: ``{metric key: value}``."""
    gaps = {key: float(value) for key, value in metrics.items() if _GAP.match(key)}
    if "test/cf_flip_rate" in metrics:
        gaps["test/cf_flip_rate"] = float(metrics["test/cf_flip_rate"])
    return gaps


def explain_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{method: {metric: value}}`` from the ``explain/<method>/<metric>`` keys."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if match := _EXPLAIN.match(key):
            found.setdefault(match["method"], {})[match["metric"]] = value
    return found


def grouped(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Metrics by their first path part (test, explain, params, time, ...), known parts first."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        found.setdefault(key.split("/", 1)[0], {})[key] = value
    order = [name for name in METRIC_GROUPS if name in found] + [name for name in found if name not in METRIC_GROUPS]
    return {name: found[name] for name in order}
