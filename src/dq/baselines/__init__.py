"""Fairness baselines beside dq's own runs, on the same split (issue 13).

- :mod:`dq.baselines.fit`: other people's methods fitted on dq's split (a logistic
  regression; fairlearn's ExponentiatedGradient; fairlearn's ThresholdOptimizer on a run's
  own model scores), returning their test predictions.
- :mod:`dq.baselines.scores`: dq's test metrics of predictions, with bootstrap intervals.
- :mod:`dq.baselines.command`: ``dq-baselines RUN_DIR``, which writes RUN_DIR/baselines.json.

dq-table's baseline rows (dq.paper.baselines) call the same fitting functions.
"""
