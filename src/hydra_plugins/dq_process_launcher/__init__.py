"""dq's worker-process launcher for Hydra (``hydra/launcher=dq_processes``, used by
``launcher=joblib``). Hydra imports every module under ``hydra_plugins`` at each start, so
this package holds only the config schema and a thin Launcher class; the work happens in
``dq.sweep.processes``."""
