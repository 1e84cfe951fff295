"""LoRA, ``regularizer=[lora]``: low-rank adapters on a frozen (possibly pretrained) base.

One folder in peft's shape, each module with one job:

- ``config``: ``LoRAConfig``, the ``regularizer.lora`` schema;
- ``layer``: the adapters (``LoRALinear``, ``LoRAConv1d``, ``LoRAConv2d``), ``apply_lora``,
  ``merge_lora`` and ``fold_lora_state``: plain ``nn.Module`` code, no objective;
- ``pretrained``: ``load_pretrained``, a finished run's best weights as the base
  (``init_from``);
- ``transform``: ``LoRATransform``, what the runner and ``dq.load_run`` call, registered
  as the ``lora`` regularizer.

It lives under ``dq.objectives`` because LoRA is chosen as a regularizer: the regularizer
registry finds its plugins in this package, and the import layers put objectives above
models. Importing the package registers the transform, as importing any other
regularizer module does.
"""

from dq.objectives.lora import transform as transform  # registers regularizer=[lora]
