"""Explanations of a trained model: captum attributions on a few test examples, their
pictures, and explanation-quality metrics (docs/design.md: ``explanations/<method>.npz`` and
``.png``, metric keys ``explain/<method>/<metric>``).

``dq.explain.run.explain_run`` is the step a run calls after its test metrics;
``dq.explain.run.check_explain`` checks an ``ExplainConfig`` against the data and model
before training; ``dq-explain`` (dq.reexplain) re-runs the step on a finished run
directory. This package imports nothing on its own (captum and matplotlib load with
``dq.explain.run``), so a run with explanations off never loads them.
"""
