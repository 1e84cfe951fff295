"""The objective: the task loss plus one module per regularizer (``regularizer=[...]``).

Each regularizer is one plugin module here (fairness, adversarial, attribution, lora, ...)
that registers its builder and its config schema with ``dq.objectives.registry``; the
registry finds the modules itself. ``dq.objectives.base`` holds ``Objective`` (what the
engine calls), the ``Term`` base class (a term's lifecycle hooks) and the
``ModelTransform`` protocol.

This package imports nothing on its own: import the module you need.
"""
