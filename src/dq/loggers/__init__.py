"""Experiment trackers a run reports to, selected with ``logger=[...]``: metrics.jsonl is
always written; TensorBoard and MLflow get the same params, epochs and final metrics."""
