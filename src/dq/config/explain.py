"""Schema of ``conf/explain/``: the explanation step after training."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dq.config.validation import require

# The names of dq.explain's methods and metrics (its registries, which need captum to import:
# tests/test_hostile_input.py checks both lists agree), so that a misspelt name is refused
# whether explanations are on or off.
METHOD_NAMES = (
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "deeplift",
    "gradient_shap",
    "occlusion",
    "lime",
    "kernel_shap",
)
METRIC_NAMES = (
    "infidelity",
    "sensitivity",
    "randomization",
    "sparseness",
    "mask_mass",
    "sensitive_share",
    "pixel_flipping",
)


class Baseline(StrEnum):
    zeros = "zeros"
    blur = "blur"
    mean = "mean"


@dataclass
class ExplainConfig:
    """Attributions (captum) on ``n_samples`` test examples after training, their pictures,
    and explanation-quality metrics. ``sensitivity_samples`` bounds the expensive
    sensitivity_max to the first few of those examples. ``pixel_flipping`` (faithfulness,
    dq.explain.faithfulness) is not in the default ``metrics``: it applies to images only
    and is refused on other data, which a default must not be.

    ``internal_batch_size`` bounds how many inputs captum evaluates at once (integrated
    gradients' interpolated points, occlusion's and LIME's perturbations), so memory does not
    grow with ``ig_steps`` × ``n_samples``: on the default run's IG (32 samples × 32 steps,
    CNN) the peak RSS grew by about 11 MB at 64, 73 MB at 128, 190 MB at 256 and 490 MB
    unbounded (1,024 points at once), with no gain in time. Captum raises it to the number of
    explained examples when it is smaller.

    ``ig_steps`` is 16 (it was 32): integrated gradients runs three times per explained
    example set (the attribution, sensitivity's re-explanations, the randomised model), so
    its steps decide most of ``time/explain_s``. On the default run's model, halving them
    cut the explanation step from about 21 s to 14 s (loaded machine) and changed its
    metrics by under 1% (sensitivity 0.215 → 0.217, randomization_rho 0.989 → 0.989,
    infidelity and sparseness the same to 4 digits); the completeness delta grew from
    0.027 to 0.048 (mean |Σ attribution − (f(x) − f(baseline))|, in logits)."""

    enabled: bool = True
    methods: list[str] = field(default_factory=lambda: ["integrated_gradients", "saliency"])
    metrics: list[str] = field(default_factory=lambda: [m for m in METRIC_NAMES if m != "pixel_flipping"])
    n_samples: int = 32
    sensitivity_samples: int = 8
    baseline: Baseline = Baseline.zeros
    ig_steps: int = 16
    internal_batch_size: int = 64
    images: bool = True

    def validate(self) -> None:
        for key, names, allowed in (("methods", self.methods, METHOD_NAMES), ("metrics", self.metrics, METRIC_NAMES)):
            unknown = [str(name) for name in names if name not in allowed]
            what = f"explain {key[:-1]}"  # as dq.explain's registries say it
            require(
                not unknown,
                key,
                f"holds an unknown {what} {(unknown or [''])[0]!r}; allowed: {', '.join(sorted(allowed))}",
            )
        require(self.n_samples >= 1, "n_samples", f"must be >= 1, got {self.n_samples}")
        require(self.sensitivity_samples >= 0, "sensitivity_samples", f"must be >= 0, got {self.sensitivity_samples}")
        require(self.ig_steps >= 1, "ig_steps", f"must be >= 1, got {self.ig_steps}")
        require(self.internal_batch_size >= 1, "internal_batch_size", f"must be >= 1, got {self.internal_batch_size}")
