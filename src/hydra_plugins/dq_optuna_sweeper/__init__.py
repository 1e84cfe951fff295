"""dq's Optuna sweeper for Hydra (``hydra/sweeper=dq_optuna``, used by ``hparams_search=<name>``).

Hydra imports every module under ``hydra_plugins`` whenever an app starts, so this package
holds only the config schema and a thin Sweeper class; Optuna and the search itself
(``dq.sweep.optuna_search``) load only when a sweep runs.
"""
