"""Caveats a model card derives from a run's numbers, by explicit rules with stated
thresholds, e.g. "robust accuracy of class Shirt at ε=0.1 is 11%, against a mean of 65%".

Each rule reads only the flat metric keys (docs/design.md), so it can be tested on a hand-made
dict and applied to any run directory, old or new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dq import metric_keys as keys
from dq.report.breakdown import breakdowns, explain_metrics, fairness_gaps, robust_by_eps


@dataclass(frozen=True)
class Thresholds:
    """When a number earns a caveat. Gaps are absolute (0.10 = 10 percentage points).

    Attributes:
        below_mean: a group's or class's (robust) accuracy this far below the overall one.
        gap: a DP or EO difference (clean or on adversarial predictions) above this.
        ece: an expected calibration error above this.
        randomization_rho: an explanation whose attributions correlate above this with those
            of the weight-randomised model fails Adebayo et al.'s sanity check.
        robust_ratio: robust accuracy below this fraction of the clean accuracy.
        min_test_examples: fewer test examples than this make every number above noisy
            (a 50% accuracy on 500 examples has a standard error of about 2.2 points).
    """

    below_mean: float = 0.10
    gap: float = 0.10
    ece: float = 0.10
    randomization_rho: float = 0.5
    robust_ratio: float = 0.5
    min_test_examples: int = 500

    def describe(self) -> list[str]:
        """The rules in words, for the card's Metrics section."""
        return [
            f"a group or class whose accuracy or robust accuracy is more than {self.below_mean * 100:.0f} "
            "percentage points below the overall one",
            f"a demographic-parity or equalized-odds difference above {self.gap:.2f}",
            f"an expected calibration error above {self.ece:.2f}",
            f"an explanation method whose randomization_rho is above {self.randomization_rho:.2f} "
            "(its attributions barely change when the weights are randomised; on tabular data compared over "
            "the features present in each input, on images also over the non-zero pixels)",
            f"robust accuracy below {self.robust_ratio:.0%} of the clean accuracy",
            f"fewer than {self.min_test_examples} test examples",
        ]


DEFAULT_THRESHOLDS = Thresholds()


def _pct(value: float) -> str:
    return f"{value:.0%}"


def caveats(metrics: Mapping[str, Any], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """Every caveat the numbers in ``metrics`` earn under ``thresholds``, worst first within a rule."""
    found = _below_mean(metrics, thresholds)
    found += _gaps(metrics, thresholds)
    ece = metrics.get(keys.test(keys.ECE))
    if isinstance(ece, (int, float)) and ece > thresholds.ece:
        found.append(
            f"calibration: expected calibration error is {ece:.3f} (above {thresholds.ece:.2f}); do not read the scores as probabilities"
        )
    found += _robust_drop(metrics, thresholds)
    found += _randomisation(metrics, thresholds)
    examples = metrics.get(keys.test("examples"))
    if isinstance(examples, (int, float)) and examples < thresholds.min_test_examples:
        found.append(
            f"few test examples: {int(examples)} (fewer than {thresholds.min_test_examples}); every number here is noisy"
        )
    return found


def _below_mean(metrics: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    found = []
    for part in breakdowns(metrics):
        series = [("accuracy", "", part.clean, metrics.get(keys.test(keys.ACCURACY)))]
        series += [
            ("robust accuracy", f" at ε={eps}", values, metrics.get(keys.robust_accuracy(eps)))
            for eps, values in part.robust.items()
        ]
        for label, where, values, overall in series:
            if not values:
                continue
            mean = float(overall) if isinstance(overall, (int, float)) else sum(values.values()) / len(values)
            for name, value in sorted(values.items(), key=lambda item: item[1]):
                if mean - value > thresholds.below_mean:
                    found.append(
                        f"{label} of {part.kind} {name}{where} is {_pct(value)}, against a mean of {_pct(mean)}"
                    )
    return found


def _gaps(metrics: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    names = {keys.DP_DIFF: "demographic-parity difference", keys.EO_DIFF: "equalized-odds difference"}
    found = []
    for key, value in fairness_gaps(metrics).items():
        k = keys.parse(key)
        if k.measure not in names or value <= thresholds.gap:  # the flip rate beside the gaps
            continue
        where = f" on adversarial predictions at ε={k.eps}" if k.attack == keys.ROBUST else ""
        found.append(f"fairness: {names[k.measure]}{where} is {value:.3f} (above {thresholds.gap:.2f})")
    return found


def _robust_drop(metrics: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    clean = metrics.get(keys.test(keys.ACCURACY))
    if not isinstance(clean, (int, float)) or clean <= 0:
        return []
    return [
        f"robustness: robust accuracy at ε={eps} is {_pct(value)}, against a clean accuracy of {_pct(clean)}"
        for eps, value in robust_by_eps(metrics).items()
        if value < thresholds.robust_ratio * clean
    ]


def _randomisation(metrics: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """A method whose randomization_rho is above the threshold fails Adebayo et al.'s
    check, unless its rho over the input's non-zero pixels (``randomization_rho_nonzero``,
    images) is not: then the correlation comes from the black background, where
    attribution × input is 0 in both models, and the card says that instead."""
    limit, found = thresholds.randomization_rho, []
    for method, values in explain_metrics(metrics).items():
        rho, nonzero = values.get("randomization_rho"), values.get("randomization_rho_nonzero")
        if not isinstance(rho, (int, float)) or rho <= limit:
            continue
        if isinstance(nonzero, (int, float)) and nonzero <= limit:
            found.append(
                f"explanations: {method}'s randomization_rho {rho:.2f} (above {limit:.2f}) comes from the input's own "
                f"zeros: its attributions are 0 wherever the input is 0, in the trained and the randomised model "
                f"alike; over the non-zero pixels it is {nonzero:.2f}, so the check does not show it ignores the weights"
            )
        else:
            found.append(
                f"explanations: {method} fails the parameter-randomisation sanity check "
                f"(randomization_rho {rho:.2f}, above {limit:.2f}): its attributions barely depend on the learned weights"
            )
    return found
