"""Explanations of a trained model: captum attributions on a few test examples, their
pictures, and explanation-quality metrics (DESIGN.md: ``explanations/<method>.npz`` and
``.png``, metric keys ``explain/<method>/<metric>``).

``explain_run`` is the step a run calls after its test metrics; ``check_explain`` checks
an ``ExplainConfig`` against the data and model before training; ``dq-explain`` re-runs
the step on a finished run directory.
"""

from dq.explain.methods import METHODS
from dq.explain.quality import METRICS
from dq.explain.run import EXPLANATIONS, check_explain, explain_run, gradient_context

__all__ = ["EXPLANATIONS", "METHODS", "METRICS", "check_explain", "explain_run", "gradient_context"]
